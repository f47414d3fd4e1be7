"""Outages, overload and shutdown, against real PostgreSQL servers and a real process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    assert_problem,
    bearer,
    course_list,
    in_process,
    mint_key,
    new_course,
    new_student,
    running_service,
)
from pgserver import _commands as pgserver_commands  # pg_ctl as the server's own OS user

from service import migrate
from service.app import create_app
from service.db import Database
from service.devdb import with_database
from service.settings import Settings

Client = httpx.AsyncClient


class OwnPostgres:
    """A PostgreSQL this test may stop and start (the embedded one, in a temp dir)."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver  # noqa: PLC0415 - only the tests that stop a PostgreSQL need it

        self.server = pgserver.get_server(data_dir, cleanup_mode="delete")  # type: ignore[attr-defined]
        self.server.psql("CREATE DATABASE outage;")
        self.url = with_database(self.server.get_uri(), "outage")

    def stop(self) -> None:
        pg_ctl = pgserver_commands.pg_ctl  # type: ignore[attr-defined]  # made at import, per binary
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    postgres = OwnPostgres(tmp_path / "pg")
    migrate.apply(postgres.url)
    yield postgres
    postgres.start()  # cleanup expects a running server
    postgres.server.cleanup()


def outage_settings(url: str) -> Settings:
    return Settings(
        database_url=url, pool_min_size=2, pool_max_size=4, connect_timeout_s=1, pool_acquire_timeout_s=1
    )


async def assert_unavailable(response: httpx.Response) -> None:
    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1


async def timed(request: Any) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = await request
    return response, time.monotonic() - start


async def test_the_service_answers_503_while_the_database_is_down_and_recovers_by_itself(
    own_postgres: OwnPostgres,
) -> None:
    key = (await mint_key(own_postgres.url, "write")).key
    async with in_process(create_app(outage_settings(own_postgres.url)), key=key) as client:
        student = await new_student(client)
        course = await new_course(client)
        url = f"/students/{student['id']}/courses"
        before = course_list(await client.post(url, json={"course_ids": [course["id"]]}))

        own_postgres.stop()
        assert (await client.get("/health")).status_code == 200
        ready, seconds = await timed(client.get("/ready"))
        assert ready.status_code == 503
        assert seconds < 2
        for request in (
            client.get(f"/students/{student['id']}"),
            client.get("/students"),
            client.post("/courses", json={"code": "DOWN1", "title": "Down"}),
            client.post(url, json={"course_ids": [course["id"]]}),
            client.get(url),
            client.put(url, json={"course_ids": []}),
        ):
            response, seconds = await timed(request)
            await assert_unavailable(response)
            assert seconds < 5

        own_postgres.start()
        # The first request after the restart must not fail on a dead pooled connection.
        assert (await client.get(f"/students/{student['id']}")).json() == student
        assert course_list(await client.get(url)) == before
        assert (await client.get("/ready")).status_code == 200


async def test_the_event_feed_resumes_by_itself_after_an_outage(own_postgres: OwnPostgres) -> None:
    key = (await mint_key(own_postgres.url, "write")).key
    async with in_process(create_app(outage_settings(own_postgres.url)), key=key) as client:
        await new_student(client)
        (first,) = (await client.get("/events")).json()["items"]
        own_postgres.stop()
        await assert_unavailable(await client.get("/events"))
        await asyncio.sleep(0.5)  # the feed's ticks fail meanwhile
        own_postgres.start()
        waiting = asyncio.create_task(client.get("/events", params={"after": first["id"], "wait": 10}))
        student = await new_student(client)
        page = (await waiting).json()
    assert [e["data"] for e in page["items"]] == [student]


async def test_the_service_starts_while_the_database_is_down(own_postgres: OwnPostgres) -> None:
    key = (await mint_key(own_postgres.url, "read")).key
    own_postgres.stop()
    async with in_process(create_app(outage_settings(own_postgres.url)), key=key) as client:
        assert (await client.get("/health")).status_code == 200
        await assert_unavailable(await client.get("/ready"))
        await assert_unavailable(await client.get("/students"))
        own_postgres.start()
        assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/students")).json() == {"items": [], "next_after": None}


async def test_while_the_database_is_down_an_unchecked_key_gets_503_and_a_cached_one_its_usual_answer(
    own_postgres: OwnPostgres,
) -> None:
    cached, unchecked = [(await mint_key(own_postgres.url, "read")).key for _ in range(2)]
    settings = Settings(
        database_url=own_postgres.url, pool_max_size=4, connect_timeout_s=1, auth_refresh_s=0.3
    )
    async with in_process(create_app(settings), key=cached) as client:
        assert (await client.get("/students")).status_code == 200
        own_postgres.stop()
        await asyncio.sleep(1)  # the cache fails to re-read its keys a few times meanwhile
        await assert_unavailable(await client.get("/students", headers=bearer(unchecked)))
        # Decided from the cache: the key is known and read-only.
        assert_problem(await client.post("/students", json={"name": "A", "email": "a@b.io"}), 403)
        await assert_unavailable(await client.get("/students"))  # the data itself is away
        assert_problem(await client.get("/students", headers={"Authorization": ""}), 401)
        own_postgres.start()
        assert (await client.get("/students", headers=bearer(unchecked))).status_code == 200


async def test_a_request_that_finds_every_connection_busy_gets_a_503_in_bounded_time(
    settings: Settings, migrated_url: str, db: asyncpg.Connection, admin_key: str
) -> None:
    one = Settings(
        database_url=settings.database_url, pool_min_size=1, pool_max_size=1, pool_acquire_timeout_s=0.3
    )
    async with in_process(create_app(one), key=admin_key) as client:
        student = await new_student(client)
        course = await new_course(client)
        holder = await asyncpg.connect(migrated_url)
        try:
            async with holder.transaction():
                # The assignment waits for this lock while holding the pool's only connection.
                await holder.execute("SELECT 1 FROM students WHERE id = $1 FOR UPDATE", student["id"])
                stuck = asyncio.create_task(
                    client.post(f"/students/{student['id']}/courses", json={"course_ids": [course["id"]]})
                )
                await wait_for_waiting_backends(db, at_least=1)
                response, seconds = await timed(client.get("/students"))
            await assert_unavailable(response)
            assert seconds < 2
            assert (await stuck).status_code == 200
        finally:
            await holder.close()
        assert (await client.get("/students")).status_code == 200


async def test_requests_that_arrive_together_still_wait_at_most_the_acquire_timeout(
    settings: Settings,
) -> None:
    # An empty pool of one: the first acquire must connect (so it suspends), and the second
    # starts before the first has its connection. It must take the timed path, not wait forever.
    tight = Settings(
        database_url=settings.database_url, pool_min_size=0, pool_max_size=1, pool_acquire_timeout_s=0.3
    )
    db = await Database.connect(tight)
    try:
        first, second = await asyncio.wait_for(
            asyncio.gather(db.acquire(), db.acquire(), return_exceptions=True), timeout=2
        )
        assert not isinstance(first, BaseException)
        assert isinstance(second, TimeoutError)
        await db.release(first)
        await db.release(await db.acquire())  # the count of lent connections is back to 0
    finally:
        await db.close(grace_s=1)


async def test_every_pooled_connection_has_the_session_settings(settings: Settings) -> None:
    db = await Database.connect(settings)
    try:
        async with AsyncExitStack() as held:  # held at once: the first one and new ones alike
            connections = [await held.enter_async_context(db.connection()) for _ in range(3)]
            assert len({id(conn) for conn in connections}) == 3
            for conn in connections:
                assert await conn.fetchval("SHOW statement_timeout") == "3s"
                assert await conn.fetchval("SHOW random_page_cost") == "1.1"
                assert await conn.fetchval("SHOW timezone") == "UTC"
                assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await db.close()


async def test_a_body_over_64_kib_is_a_413_problem(client: Client, db: asyncpg.Connection) -> None:
    response = await client.post("/students", json={"name": "x" * 70_000, "email": "big@example.org"})
    assert_problem(response, 413)
    assert await db.fetchval("SELECT count(*) FROM students") == 0


# Graceful shutdown, with a real server process


@pytest.fixture
def server(migrated_url: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with running_service(migrated_url) as (process, base):
        yield process, base


async def test_sigterm_lets_requests_in_flight_finish_then_exits_0(
    server: tuple[subprocess.Popen[bytes], str],
    client: Client,
    db: asyncpg.Connection,
    migrated_url: str,
    admin_key: str,
) -> None:
    process, base = server
    student = await new_student(client)
    course = await new_course(client)
    url = f"{base}/students/{student['id']}/courses"
    holder = await asyncpg.connect(migrated_url)
    try:
        # Hold the student's row so every assignment waits inside the server, in flight.
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM students WHERE id = $1 FOR UPDATE", student["id"])
        async with httpx.AsyncClient(timeout=30, headers=bearer(admin_key)) as http:
            burst = [
                asyncio.create_task(http.post(url, json={"course_ids": [course["id"]]})) for _ in range(20)
            ]
            await wait_for_waiting_backends(db, at_least=1)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert process.poll() is None, "the server quit with requests in flight"
            await transaction.rollback()
            responses = await asyncio.gather(*burst)
    finally:
        await holder.close()
    assert [r.status_code for r in responses] == [200] * 20
    assert process.wait(timeout=15) == 0


async def wait_for_waiting_backends(db: asyncpg.Connection, *, at_least: int) -> None:
    for _ in range(100):
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'enrollment-service' AND wait_event_type = 'Lock'"
        )
        if waiting >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no request reached the database")
