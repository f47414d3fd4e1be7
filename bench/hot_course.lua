-- wrk script for bench/hot_course.py: every request enrolls the next student in one course.
--   wrk -t1 -c64 -d10s -s hot_course.lua http://127.0.0.1:PORT -- COURSE FIRST_STUDENT
-- One thread, so the student ids never repeat. done() prints one JSON line: the answers by
-- status (200 enrolled, 409 course full, anything else), socket errors, req/s, p50, p99.

local threads = {}
local headers = {["Content-Type"] = "application/json"}
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then
  headers["Authorization"] = "Bearer " .. key
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  course, student = tonumber(args[1]), tonumber(args[2])
  if not (course and student) then
    error("usage: -- COURSE FIRST_STUDENT")
  end
  body = string.format('{"course_ids":[%d]}', course)
  enrolled, full, other = 0, 0, 0
end

function request()
  local path = "/students/" .. student .. "/courses"
  student = student + 1
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status == 200 then
    enrolled = enrolled + 1
  elseif status == 409 then
    full = full + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local counts = {enrolled = 0, full = 0, other = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(counts) do
      counts[name] = counts[name] + (thread:get(name) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format('{"requests":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,'
    .. '"enrolled":%d,"full":%d,"other":%d,"socket_errors":%d}\n',
    summary.requests, summary.requests / summary.duration * 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    counts.enrolled, counts.full, counts.other, e.connect + e.read + e.write + e.timeout))
end
