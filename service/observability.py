"""What operators see: an X-Request-ID on every answer, one JSON log line per request,
and Prometheus metrics at /metrics, from a registry each app builds for itself.

`RequestObserver` wraps the whole application (routing included, so unknown paths are
counted too) and costs a few microseconds per request: metrics are counted in plain
lists and exported at scrape time, and log lines are msgspec-encoded and written in batches.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is echoed only if it cannot smuggle anything into a header or a log line.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RequestMetrics(Collector):
    """Requests answered and their latency, by method, route template and status.

    Counted in plain lists on the request path and turned into Prometheus families
    only when /metrics is scraped: prometheus_client's Counter and Histogram take a
    lock per increment and scan the buckets in Python: about 3 µs more per request. Requests
    and scrapes run on the one event loop thread, so no lock is needed.
    """

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self._bounds = buckets
        self._le = [*map(floatToGoString, buckets), "+Inf"]
        # Per label set: how many requests fell in each bucket (the last is +Inf), then their total seconds.
        self._series: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self._series.get((method, route, status))
        if series is None:
            series = self._series[(method, route, status)] = [0] * (len(self._bounds) + 2)
        series[bisect.bisect_left(self._bounds, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        labels = ["method", "route", "status"]
        requests = CounterMetricFamily("enrollment_http_requests", "HTTP requests answered.", labels=labels)
        latency = HistogramMetricFamily(
            "enrollment_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer.",
            labels=labels,
        )
        for (method, route, status), series in list(self._series.items()):
            values = [method, route, str(status)]
            cumulative = list(itertools.accumulate(series[:-1]))
            requests.add_metric(values, cumulative[-1])
            latency.add_metric(values, list(zip(self._le, cumulative, strict=True)), sum_value=series[-1])
        yield requests
        yield latency


class PoolMetrics(Collector):
    """The pool's numbers, read at scrape time (not per request) from the callables it is given."""

    def __init__(self) -> None:
        self._gauges: list[tuple[str, str, Callable[[], int]]] = []

    def watch(self, size: Callable[[], int], idle: Callable[[], int], waiting: Callable[[], int]) -> None:
        self._gauges = [
            ("enrollment_db_pool_connections", "Connections the pool holds open.", size),
            ("enrollment_db_pool_idle_connections", "Open connections not lent to a request.", idle),
            ("enrollment_db_pool_waiting_requests", "Requests waiting for a pooled connection.", waiting),
        ]

    def collect(self) -> Iterator[Metric]:
        for name, documentation, read in self._gauges:
            yield GaugeMetricFamily(name, documentation, value=read())


class AuthMetrics(Collector):
    """Refused requests by reason, and key lookups that went to the database."""

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()
        self.lookups = 0

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "enrollment_auth_failures", "Requests refused with 401 or 403, by reason.", labels=["reason"]
        )
        for reason, count in sorted(self.failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield CounterMetricFamily(
            "enrollment_auth_key_lookups",
            "API keys looked up in the database (cache misses); none in the steady state.",
            value=self.lookups,
        )


class Metrics:
    """One app's Prometheus registry: its requests, its pool, its API key checks, and the
    process it runs in.

    Built by `create_app`, so two apps in one process (as tests make) count apart.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestMetrics()
        self.pool = PoolMetrics()
        self.auth = AuthMetrics()
        for collector in (
            self.requests,
            self.pool,
            self.auth,
            PROCESS_COLLECTOR,
            PLATFORM_COLLECTOR,
            GC_COLLECTOR,
        ):
            self.registry.register(collector)


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """GET /metrics in Prometheus' text format (per worker process)."""
    registry = request.app.state["metrics"].registry
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def request_id_of(scope: Scope) -> str | None:
    """The id `RequestObserver` gave this request (None outside an observed request)."""
    return scope.get("state", {}).get("request_id")


class _AccessLine(msgspec.Struct):
    ts: float
    method: str
    route: str
    status: int
    duration_ms: float
    request_id: str
    key_id: int | None  # the caller's API key (never the key)
    msg: str = "request"


class AccessLog:
    """JSON lines to stdout, written in batches: one syscall per request cost about 4%.

    A batch goes out when the next line would take it past PIPE_BUF (so a write stays
    atomic and workers' lines never interleave) or 50 ms after its first line.
    """

    BATCH_BYTES = 4096  # PIPE_BUF on Linux
    DELAY_S = 0.05

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd
        self._batch = bytearray()
        self._flush_pending = False
        self._encoder = msgspec.json.Encoder()

    def write(self, line: _AccessLine) -> None:
        encoded = self._encoder.encode(line) + b"\n"
        if len(self._batch) + len(encoded) > self.BATCH_BYTES:
            self.flush()
        self._batch += encoded
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_later(self.DELAY_S, self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        if self._batch:
            os.write(self._fd, self._batch)
            self._batch.clear()


class RequestObserver:
    """ASGI wrapper: request id in and out, then one log line and the metrics per request."""

    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics, access_log: AccessLog | None) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope["headers"])
        scope["state"]["request_id"] = request_id
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500  # what the client sees if the answer never starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.append(id_header)  # the response's own fresh list: no copy
                else:
                    message["headers"] = [*(headers or ()), id_header]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - start, request_id)

    def _record(self, scope: HTTPScope, status: int, seconds: float, request_id: str) -> None:
        method, route = scope["method"], scope.get("path_template") or "unmatched"
        self.metrics.observe(method, route, status, seconds)
        if self.access_log is not None:
            self.access_log.write(
                _AccessLine(
                    time.time(),
                    method,
                    route,
                    status,
                    round(seconds * 1000, 3),
                    request_id,
                    scope["state"].get("key_id"),
                )
            )


# Generated ids: a random prefix per process and a counter, unique without a syscall
# per request (uuid4 reads os.urandom each time).
_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.fullmatch(value):
            return value.decode()
    return f"{_ID_PREFIX}{next(_id_counter):016x}"
