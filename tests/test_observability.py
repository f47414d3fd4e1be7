"""What operators see: request ids, one JSON log line per request, Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from helpers import MAX_ID, assert_problem, new_student

from service.observability import AccessLog, RequestMetrics

Client = httpx.AsyncClient


async def test_a_callers_request_id_is_echoed(client: Client) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123.def"})
    assert response.headers["x-request-id"] == "abc-123.def"


async def test_a_request_without_an_id_gets_a_fresh_one(client: Client) -> None:
    first = (await client.get("/health")).headers["x-request-id"]
    second = (await client.get("/health")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize("hostile", ["a b", "x" * 129, "a\tb", "<script>", "a;b", ""])
async def test_an_unsafe_request_id_is_replaced_not_echoed(client: Client, hostile: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": hostile})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_a_problem_body_carries_the_request_id(client: Client) -> None:
    response = await client.get(f"/students/{MAX_ID}", headers={"X-Request-ID": "trace-42"})
    assert assert_problem(response, 404)["request_id"] == "trace-42"
    assert response.headers["x-request-id"] == "trace-42"
    unrouted = await client.get("/no/such/route", headers={"X-Request-ID": "trace-43"})
    assert assert_problem(unrouted, 404)["request_id"] == "trace-43"
    invalid = await client.post("/students", json={}, headers={"X-Request-ID": "trace-44"})
    assert assert_problem(invalid, 422)["request_id"] == "trace-44"


async def test_each_request_writes_one_json_log_line(
    client: Client, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    student = await new_student(client)
    await client.get(f"/students/{student['id']}", headers={"X-Request-ID": "log-me"})
    await asyncio.sleep(AccessLog.DELAY_S * 2)  # lines go out in batches
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["request_id"] == "log-me"]
    assert len(mine) == 1
    assert mine[0]["method"] == "GET"
    assert mine[0]["route"] == "/students/{student_id}"  # the template, not the id
    assert mine[0]["status"] == 200
    assert mine[0]["duration_ms"] > 0


async def test_metrics_count_requests_by_route_and_status_and_show_the_pool(client: Client) -> None:
    await client.get(f"/students/{MAX_ID}")
    await client.get(f"/students/{MAX_ID - 1}")
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    counted = re.search(
        r'enrollment_http_requests_total\{method="GET",route="/students/\{student_id\}",status="404"\} (\d+)',
        text,
    )
    assert counted
    assert float(counted.group(1)) >= 2
    assert 'enrollment_http_request_duration_seconds_bucket{le="0.005",method="GET"' in text
    assert re.search(r"^enrollment_db_pool_connections \d", text, re.MULTILINE)
    assert re.search(r"^enrollment_db_pool_idle_connections \d", text, re.MULTILINE)
    assert re.search(r"^enrollment_db_pool_waiting_requests 0", text, re.MULTILINE)
    assert str(MAX_ID) not in text  # ids never become labels


def test_request_metrics_bucket_each_latency_at_or_below_its_bound() -> None:
    metrics = RequestMetrics(buckets=(0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.003, 0.01, 7.0):  # a bound itself counts as "le"
        metrics.observe("GET", "/r", 200, seconds)
    metrics.observe("GET", "/r", 404, 0.002)
    requests, latency = metrics.collect()
    assert {(s.labels["status"], s.value) for s in requests.samples} == {("200", 5), ("404", 1)}
    ok = {(s.name, s.labels.get("le")): s.value for s in latency.samples if s.labels["status"] == "200"}
    assert ok[("enrollment_http_request_duration_seconds_bucket", "0.001")] == 2
    assert ok[("enrollment_http_request_duration_seconds_bucket", "0.01")] == 4
    assert ok[("enrollment_http_request_duration_seconds_bucket", "+Inf")] == 5
    assert ok[("enrollment_http_request_duration_seconds_count", None)] == 5
    assert ok[("enrollment_http_request_duration_seconds_sum", None)] == pytest.approx(7.0145)
