-- wrk workload for the enrollment endpoints (bench/bench.py runs it; adapted from
-- shared/perf/bench/workload.lua, which counts non-200; this counts non-2xx).
--   wrk -t1 -c32 -d10s -s workload.lua http://127.0.0.1:PORT -- MODE SMIN SMAX CMIN CMAX [WRITE_PCT]
-- MODE: get  = GET  /students/{random id}/courses
--       post = POST /students/{random id}/courses {"course_ids": [3 random existing ids]}
--       mix  = get, with WRITE_PCT percent (default 10) post
-- Fixed random seed: every run sends the same request sequence. done() prints one JSON line;
-- any answer outside 2xx counts in "non2xx", any socket error or timeout in "socket_errors";
-- "valid" is false when there was any error or no answer at all.

local threads = {}
local json_headers = {["Content-Type"] = "application/json"}
local get_headers = {}
-- BENCH_API_KEY (make bench mints one): sent as a bearer token with every request.
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then
  json_headers["Authorization"] = "Bearer " .. key
  get_headers["Authorization"] = "Bearer " .. key
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  smin, smax = tonumber(args[2]), tonumber(args[3])
  cmin, cmax = tonumber(args[4]), tonumber(args[5])
  write_pct = tonumber(args[6] or "10")
  if not (mode == "get" or mode == "post" or mode == "mix") or not (smin and smax and cmin and cmax) then
    error("usage: -- get|post|mix SMIN SMAX CMIN CMAX [WRITE_PCT]")
  end
  non2xx = 0
  math.randomseed(20240601)
end

local function courses_path()
  return "/students/" .. math.random(smin, smax) .. "/courses"
end

function request()
  if mode == "post" or (mode == "mix" and math.random(100) <= write_pct) then
    local body = string.format('{"course_ids":[%d,%d,%d]}',
      math.random(cmin, cmax), math.random(cmin, cmax), math.random(cmin, cmax))
    return wrk.format("POST", courses_path(), json_headers, body)
  end
  return wrk.format("GET", courses_path(), get_headers)
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad, mode_name = 0, "?"
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    mode_name = thread:get("mode") or mode_name
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local valid = bad + socket_errors == 0 and summary.requests > 0
  io.write(string.format('{"workload":"%s","requests":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,'
    .. '"non2xx":%d,"socket_errors":%d,"errors":%d,"valid":%s}\n',
    mode_name, summary.requests, summary.requests / summary.duration * 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad, socket_errors,
    bad + socket_errors, tostring(valid)))
end
