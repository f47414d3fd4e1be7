"""Two service processes behind a real HAProxy: a rolling restart under load loses nothing.

Each process gets SIGTERM in turn and comes back on its port while a client keeps
reading and writing through HAProxy and a consumer long-polls the events feed (round
robin: its polls alternate between the processes). SHUTDOWN_DRAIN_S makes a process
fail /ready first, so HAProxy stops sending before the process stops listening.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from components import HAProxy, free_port, scratch_dir
from helpers import ROOT, bearer, mint_key

DRAIN_S = "1"  # HAProxy marks a server down after 2 failed checks 200 ms apart: well within this


class ServiceProcess:
    """`python -m service` on a fixed port, so that it can come back where HAProxy expects it."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port, self.database_url, self.log = free_port(), database_url, log
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "PORT": str(self.port),
            "ACCESS_LOG": "false",
            "SHUTDOWN_DRAIN_S": DRAIN_S,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                assert self.process.poll() is None, self.log.read_text()[-2000:]
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)

    def terminate(self) -> int:
        """SIGTERM, as an orchestrator sends it; answers the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def cluster(migrated_url: str, tmp_path: Path) -> Iterator[tuple[HAProxy, list[ServiceProcess]]]:
    """Two processes behind HAProxy, both UP."""
    services = [ServiceProcess(migrated_url, tmp_path / f"service{i}.log") for i in range(2)]
    with scratch_dir("haproxy-") as workdir:
        proxy = HAProxy(workdir, [s.port for s in services])
        try:
            for service in services:
                service.start()
            proxy.start()
            for i in range(len(services)):
                proxy.wait_until(f"s{i}", "UP")
            yield proxy, services
        finally:
            proxy.stop()
            for service in services:
                service.kill()


class Load:
    """A client through HAProxy: 90 % GET of a student's courses, 10 % POST enrolling one more."""

    def __init__(self, http: httpx.AsyncClient, students: list[int], courses: list[int]) -> None:
        self.http, self.students, self.courses = http, students, courses
        self.answered: Counter[int] = Counter()
        self.failures: list[str] = []
        self.stopping = False

    async def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stopping:
            student = rng.choice(self.students)
            try:
                if rng.random() < 0.9:
                    response = await self.http.get(f"/students/{student}/courses")
                else:
                    body = {"course_ids": [rng.choice(self.courses)]}
                    response = await self.http.post(f"/students/{student}/courses", json=body)
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
                continue
            self.answered[response.status_code] += 1
            if response.status_code != 200:
                self.failures.append(f"{response.status_code} {response.text[:200]}")


async def consume(http: httpx.AsyncClient, after: int, until: asyncio.Event, seen: list[int]) -> None:
    """Follow the feed with long polls (spread over both processes) until told, then to its end."""
    cursor, last = after, False
    while True:
        page = await http.get("/events", params={"after": cursor, "limit": 50, "wait": 2})
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        seen += [event["id"] for event in items]
        cursor = items[-1]["id"] if items else cursor
        if last and not items:
            return
        last = until.is_set()


async def test_a_rolling_restart_under_load_fails_no_request_and_the_feed_has_no_gap(
    cluster: tuple[HAProxy, list[ServiceProcess]], migrated_url: str, db: asyncpg.Connection
) -> None:
    proxy, services = cluster
    key = bearer((await mint_key(migrated_url, "write")).key)
    async with httpx.AsyncClient(base_url=proxy.base, headers=key, timeout=30) as http:
        courses = [await created(http, "/courses", {"code": f"RR{i}", "title": "T"}) for i in range(10)]
        students = [
            await created(http, "/students", {"name": "S", "email": f"rr{i}@example.org"}) for i in range(50)
        ]
        start_after = await db.fetchval("SELECT coalesce(max(id), 0) FROM events")
        load, seen, settled = Load(http, students, courses), list[int](), asyncio.Event()
        workers = [asyncio.create_task(load.worker(seed)) for seed in range(16)]
        consumer = asyncio.create_task(consume(http, start_after, settled, seen))
        await asyncio.sleep(2)
        timings = await asyncio.to_thread(rolling_restart, proxy, services)
        await asyncio.sleep(2)
        load.stopping = True
        await asyncio.gather(*workers)
        settled.set()
        await asyncio.wait_for(consumer, 30)
    stats, answered = proxy.stats(), sum(load.answered.values())
    print(f"rolling restart: {answered} requests, {len(load.failures)} failed, {timings}, {stats}")
    assert load.failures == []
    assert answered > 500, "the load was not steady"
    assert all(stats[f"s{i}"]["sessions"] > 0 for i in range(2))
    written = await db.fetch(
        "SELECT id + i AS id FROM events, generate_series(0, coalesce(cardinality(course_ids), 1) - 1) AS i"
        " WHERE id > $1 ORDER BY 1",
        start_after,
    )
    assert len(written) > 10, "the load wrote events"
    assert seen == [row["id"] for row in written]


def rolling_restart(proxy: HAProxy, services: list[ServiceProcess]) -> dict[str, float]:
    """Each process in turn: SIGTERM, exit 0, start again, UP in HAProxy; answers the timings."""
    timings: dict[str, float] = {}
    for i, service in enumerate(services):
        start = time.monotonic()
        assert service.terminate() == 0
        timings[f"s{i} stopped after"] = round(time.monotonic() - start, 2)
        service.start()
        timings[f"s{i} up again after"] = round(time.monotonic() - start + proxy.wait_until(f"s{i}", "UP"), 2)
        time.sleep(1)  # steady load on both before the next one
    return timings


async def test_a_revocation_through_haproxy_reaches_both_processes_within_5_s(
    cluster: tuple[HAProxy, list[ServiceProcess]], migrated_url: str, admin_key: str
) -> None:
    proxy, services = cluster
    minted = await mint_key(migrated_url, "read")
    async with httpx.AsyncClient(timeout=10) as http:
        for service in services:
            assert (await http.get(f"{service.base}/students", headers=bearer(minted.key))).status_code == 200
        revoked = await http.delete(f"{proxy.base}/api-keys/{minted.id}", headers=bearer(admin_key))
        assert revoked.status_code == 204
        start, refused_by = time.monotonic(), set[int]()
        while len(refused_by) < len(services):
            for service in services:
                if (
                    await http.get(f"{service.base}/students", headers=bearer(minted.key))
                ).status_code == 401:
                    refused_by.add(service.port)
            assert time.monotonic() - start < 5, "a process still accepts the revoked key"
            await asyncio.sleep(0.05)


async def created(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> int:
    response = await http.post(path, json=body)
    assert response.status_code == 201, response.text
    created_id: int = response.json()["id"]
    return created_id


async def test_on_sigterm_ready_fails_at_once_while_requests_are_still_served_then_it_exits_0(
    migrated_url: str, admin_key: str, tmp_path: Path
) -> None:
    service = ServiceProcess(migrated_url, tmp_path / "service.log")
    service.start()
    try:
        async with httpx.AsyncClient(base_url=service.base, headers=bearer(admin_key), timeout=5) as http:
            assert (await http.get("/ready")).status_code == 200
            assert service.process is not None
            service.process.send_signal(signal.SIGTERM)
            start = time.monotonic()
            await asyncio.sleep(0.2)
            ready = await http.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["type"] == "urn:enrollment:problem:shutting-down"
            assert (await http.get("/students")).status_code == 200  # still serving while the LB notices
            assert (await http.get("/health")).status_code == 200
        assert await asyncio.to_thread(service.process.wait, 15) == 0
        assert time.monotonic() - start >= float(DRAIN_S)
    finally:
        service.kill()
