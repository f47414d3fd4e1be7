"""4b. The events feed under load: consumers tailing GET /events with `wait` while wrk writes,
and 1,000 idle long polls beside ordinary GETs."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import datetime
from typing import Any

import httpx

from . import log
from .load import run_wrk
from .service import Service

Record = dict[str, Any]
CONSUMERS = 4
WAITERS = 1000
NEVER = 2**63 - 2  # a cursor no event follows: the long poll waits its whole `wait`


async def _tail(http: httpx.AsyncClient, after: int, stop_at: float, delays: list[float]) -> int:
    """Follow the feed until `stop_at`; answers how many events arrived, adds each one's delay."""
    received = 0
    while time.time() < stop_at:
        page = (await http.get("/events", params={"after": after, "limit": 1000, "wait": 1})).json()
        now = time.time()
        for event in page["items"]:
            delays.append(now - datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp())
            after = event["id"]
        received += len(page["items"])
    return received


async def _delivery(
    service: Service, seconds: int, ranges: tuple[int, ...], args: argparse.Namespace
) -> Record:
    headers = {"Authorization": f"Bearer {os.environ.get('BENCH_API_KEY', '')}"}
    async with httpx.AsyncClient(base_url=service.base, headers=headers, timeout=30) as http:
        newest = await _newest(http)
        delays: list[float] = []
        stop_at = time.time() + seconds + 2  # the consumers catch up after the writers stop
        writers = asyncio.to_thread(run_wrk, service.base, "post", seconds, ranges, args)
        written, *received = await asyncio.gather(
            writers, *(_tail(http, newest, stop_at, delays) for _ in range(CONSUMERS))
        )
    delays.sort()
    return {
        "workload": "feed",
        "consumers": CONSUMERS,
        "writes_per_s": written.get("rps"),
        "events_per_s_each": round(statistics.mean(received) / seconds),
        "delay_p50_ms": round(delays[len(delays) // 2] * 1000, 1) if delays else None,
        "delay_p99_ms": round(delays[int(len(delays) * 0.99)] * 1000, 1) if delays else None,
        "valid": bool(delays) and written.get("valid", False),
    }


async def _newest(http: httpx.AsyncClient) -> int:
    after = 0
    while True:
        page = (await http.get("/events", params={"after": after, "limit": 1000})).json()
        if not page["items"]:
            return after
        after = page["items"][-1]["id"]


async def _with_waiters(
    service: Service, seconds: int, ranges: tuple[int, ...], args: argparse.Namespace
) -> Record:
    """wrk's GET workload while WAITERS long polls wait on the same worker."""
    headers = {"Authorization": f"Bearer {os.environ.get('BENCH_API_KEY', '')}"}
    limits = httpx.Limits(max_connections=WAITERS + 10, max_keepalive_connections=WAITERS + 10)
    async with httpx.AsyncClient(base_url=service.base, headers=headers, timeout=40, limits=limits) as http:
        stop = asyncio.Event()

        async def wait_forever() -> None:
            while not stop.is_set():
                await http.get("/events", params={"after": NEVER, "wait": 30})

        waiters = [asyncio.create_task(wait_forever()) for _ in range(WAITERS)]
        await asyncio.sleep(2)  # all of them waiting
        try:
            return await asyncio.to_thread(run_wrk, service.base, "get", seconds, ranges, args)
        finally:
            stop.set()
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


def measure_feed(
    service: Service, seconds: int, ranges: tuple[int, ...], args: argparse.Namespace
) -> list[str]:
    """Both parts on one fresh service; answers the lines for the report."""
    with service:
        delivery = asyncio.run(_delivery(service, seconds, ranges, args))
        alone = run_wrk(service.base, "get", seconds, ranges, args)
        beside = asyncio.run(_with_waiters(service, seconds, ranges, args))
    writes = delivery["writes_per_s"] or 0
    lines = [
        f"- Feed: {CONSUMERS} consumers tailing with wait while wrk POSTs {writes:,.0f}/s: "
        f"{delivery['events_per_s_each']:,} events/s delivered to each; delay from commit to delivery "
        f"p50 {delivery['delay_p50_ms']} ms, p99 {delivery['delay_p99_ms']} ms",
        f"- GET beside {WAITERS} idle long polls: {beside.get('rps', 0):,.0f} req/s, "
        f"p99 {beside.get('p99_ms', 0):.1f} ms, errors {beside.get('errors')} "
        f"(alone, just before: {alone.get('rps', 0):,.0f} req/s, p99 {alone.get('p99_ms', 0):.1f} ms)",
    ]
    for line in lines:
        log(line)
    return lines
