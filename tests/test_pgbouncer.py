"""The service behind a real PgBouncer 1.18 in transaction mode (no prepared statements there).

`make test-pgbouncer` runs the enrollment, auth and events modules whole through one
(TEST_VIA_PGBOUNCER=1, conftest.py); these tests run in every `make test`: real service
processes sharing a few PgBouncer server connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from components import PgBouncer, pgbouncer
from conftest import set_session_settings_on
from helpers import bearer, mint_key, running_service

from service.db import check_queries


@pytest.fixture(scope="module")
async def settings_on_database(migrated_url: str) -> str:
    """PgBouncer drops the session settings of the startup packet: the database carries them."""
    await set_session_settings_on(migrated_url)
    return migrated_url


@pytest.fixture
def one_server_connection(settings_on_database: str) -> Iterator[PgBouncer]:
    """A PgBouncer with a single server connection: every client shares it, one transaction at a time."""
    with pgbouncer(settings_on_database, pool_size=1) as bouncer:
        yield bouncer


@pytest.fixture
def two_server_connections(settings_on_database: str) -> Iterator[PgBouncer]:
    with pgbouncer(settings_on_database, pool_size=2) as bouncer:
        yield bouncer


async def test_the_start_up_check_leaves_no_named_statement_with_the_cache_off(migrated_url: str) -> None:
    """What lets processes share PgBouncer's server connections; with the cache on, it would not."""
    for cache_size, leaves_statements in ((0, False), (100, True)):
        conn = await asyncpg.connect(migrated_url, statement_cache_size=cache_size)
        try:
            await check_queries(conn)
            left = await conn.fetchval("SELECT count(*) FROM pg_prepared_statements")
        finally:
            await conn.close()
        assert (left > 0) is leaves_statements, (cache_size, left)


def test_processes_start_one_after_another_on_one_server_connection(
    one_server_connection: PgBouncer, migrated_url: str, tmp_path: Path
) -> None:
    """Each start-up check runs on the same server connection: a named statement left by the first
    would make the second's fail ("prepared statement ... already exists")."""
    url, log = one_server_connection.url(migrated_url), tmp_path / "service.log"
    for _ in range(3):
        with running_service(url, output=log, DB_STATEMENT_CACHE_SIZE="0") as (process, base):
            assert httpx.get(f"{base}/ready", timeout=5).status_code == 200
            assert process.poll() is None
    output = log.read_text()
    assert "cannot start" not in output, output
    assert "set it on the role" not in output, output  # the database carries the session settings


@pytest.fixture
async def two_processes(
    two_server_connections: PgBouncer, migrated_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str, str, Path]]:
    """Two service processes (16 pooled connections each) sharing two PgBouncer server connections."""
    url, log = two_server_connections.url(migrated_url), tmp_path / "service.log"
    with (
        running_service(url, output=log, DB_STATEMENT_CACHE_SIZE="0") as (_, first),
        running_service(url, output=log, DB_STATEMENT_CACHE_SIZE="0") as (_, second),
    ):
        yield first, second, log
    assert "Traceback" not in log.read_text()


async def test_the_whole_api_works_through_pgbouncer_under_concurrent_load(
    two_processes: tuple[str, str, Path], migrated_url: str, db: asyncpg.Connection
) -> None:
    """Students, courses, per-student and bulk enrollments (transactions included), from 64
    concurrent clients over two processes: each answer is the one its own request asked for."""
    first, second, _ = two_processes
    key = bearer((await mint_key(migrated_url, "write")).key)
    async with httpx.AsyncClient(headers=key, timeout=20) as http:
        courses = [await post(http, f"{first}/courses", {"code": f"PGB{i}", "title": "T"}) for i in range(8)]
        course_ids = [c["id"] for c in courses]

        async def one_student(n: int) -> None:
            base = (first, second)[n % 2]
            other = (second, first)[n % 2]
            student = await post(http, f"{base}/students", {"name": f"S{n}", "email": f"pgb{n}@example.org"})
            path = f"/students/{student['id']}/courses"
            mine = sorted({course_ids[n % 8], course_ids[(n * 3) % 8]})
            assigned = await http.post(f"{other}{path}", json={"course_ids": mine})
            assert [c["id"] for c in assigned.json()] == mine, assigned.text
            replaced = await http.put(f"{base}{path}", json={"course_ids": mine[:1]})  # a transaction
            assert [c["id"] for c in replaced.json()] == mine[:1], replaced.text
            read = await http.get(f"{other}{path}")
            assert [c["id"] for c in read.json()] == mine[:1], read.text
            again = await http.get(f"{base}/students/{student['id']}")
            assert again.json()["email"] == f"pgb{n}@example.org"

        await asyncio.gather(*(one_student(n) for n in range(64)))
        pairs = [{"student_id": s, "course_id": course_ids[0]} for s in await student_ids(db)]
        bulk = await http.post(f"{second}/enrollments", json={"enrollments": pairs})
        assert bulk.status_code == 200, bulk.text
        roster = await http.get(f"{first}/courses/{course_ids[0]}/students", params={"limit": 500})
        assert len(roster.json()["items"]) == 64
        deleted = await http.delete(f"{first}/students/{pairs[0]['student_id']}")  # a transaction too
        assert deleted.status_code == 204


async def test_a_revocation_reaches_both_processes_through_pgbouncer(
    two_processes: tuple[str, str, Path], migrated_url: str, admin_key: str
) -> None:
    first, second, _ = two_processes
    minted = await mint_key(migrated_url, "read")
    async with httpx.AsyncClient(timeout=10) as http:
        for base in (first, second):
            assert (await http.get(f"{base}/students", headers=bearer(minted.key))).status_code == 200
        revoked = await http.delete(f"{first}/api-keys/{minted.id}", headers=bearer(admin_key))
        assert revoked.status_code == 204
        start = time.monotonic()
        while (await http.get(f"{second}/students", headers=bearer(minted.key))).status_code == 200:
            assert time.monotonic() - start < 5, "the other process still accepts the revoked key"
            await asyncio.sleep(0.05)
        assert (await http.get(f"{first}/students", headers=bearer(minted.key))).status_code == 401


async def test_the_event_feed_is_gap_free_through_pgbouncer(
    two_processes: tuple[str, str, Path], migrated_url: str, db: asyncpg.Connection
) -> None:
    """Concurrent writers on both processes; a consumer long-polling both in turn sees every
    event once, in order (the feed's horizon needs no session state: no direct connection)."""
    first, second, _ = two_processes
    key = bearer((await mint_key(migrated_url, "write")).key)
    start_after = await db.fetchval("SELECT coalesce(max(id), 0) FROM events")
    async with httpx.AsyncClient(headers=key, timeout=40) as http:

        async def writer(n: int) -> None:
            for i in range(10):
                await post(http, f"{(first, second)[i % 2]}/courses", {"code": f"EV{n}x{i}", "title": "T"})

        seen: list[int] = []
        writers = asyncio.gather(*(writer(n) for n in range(8)))
        cursor, turn = start_after, 0
        while not (writers.done() and len(seen) >= 80):
            page = await http.get(
                f"{(first, second)[turn % 2]}/events", params={"after": cursor, "limit": 7, "wait": 2}
            )
            assert page.status_code == 200, page.text
            ids = [event["id"] for event in page.json()["items"]]
            seen += ids
            cursor, turn = (ids[-1] if ids else cursor), turn + 1
            assert turn < 500, "the consumer does not get to the end"
        await writers
    written = await db.fetch("SELECT id FROM events WHERE id > $1 ORDER BY id", start_after)
    assert seen == [row["id"] for row in written]


async def post(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(url, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def student_ids(db: asyncpg.Connection) -> list[int]:
    return [
        row["id"] for row in await db.fetch("SELECT id FROM students WHERE email LIKE 'pgb%' ORDER BY id")
    ]
