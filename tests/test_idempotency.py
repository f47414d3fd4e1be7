"""Safe retries: `Idempotency-Key` on POST /students and POST /courses (API.md "Retries")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from helpers import HeldClient, assert_problem, bearer, mint_key, unique
from litestar import Litestar

from service import idempotency
from service.app import create_app
from service.db import Database
from service.idempotency import IdempotencyQueries
from service.settings import Settings

Client = httpx.AsyncClient


def a_key() -> dict[str, str]:
    return {"Idempotency-Key": f"retry-{uuid.uuid4()}"}


def a_student() -> dict[str, str]:
    return {"name": "Ada Lovelace", "email": f"{unique('ada')}@example.org"}


async def rows_with_email(db: asyncpg.Connection, email: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM students WHERE lower(email) = lower($1)", email))


async def test_a_retry_with_the_same_key_and_body_replays_the_first_answer_and_writes_nothing(
    client: Client, db: asyncpg.Connection
) -> None:
    key, body = a_key(), a_student()
    first = await client.post("/students", json=body, headers=key)
    events = await db.fetchval("SELECT count(*) FROM events")
    again = await client.post("/students", json=body, headers=key)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"] == f"/students/{first.json()['id']}"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await rows_with_email(db, body["email"]) == 1
    assert await db.fetchval("SELECT count(*) FROM events") == events


async def test_the_same_body_is_judged_as_validated_not_byte_for_byte(client: Client) -> None:
    key, body = a_key(), a_student()
    first = await client.post("/students", json=body, headers=key)
    reordered = {"email": body["email"], "ignored": 1, "name": body["name"]}
    again = await client.post("/students", json=reordered, headers=key)
    assert again.status_code == 201
    assert again.json() == first.json()


async def test_the_same_key_with_another_body_is_a_422_and_writes_nothing(
    client: Client, db: asyncpg.Connection
) -> None:
    key = a_key()
    assert (
        await client.post("/courses", json={"code": unique("IK"), "title": "A"}, headers=key)
    ).status_code == 201
    other = {"code": unique("IK"), "title": "B"}
    assert_problem(await client.post("/courses", json=other, headers=key), 422)
    assert await db.fetchval("SELECT count(*) FROM courses WHERE code = $1", other["code"]) == 0


async def test_the_same_key_on_another_route_is_another_request(client: Client) -> None:
    key = a_key()
    assert (
        await client.post("/courses", json={"code": unique("IK"), "title": "A"}, headers=key)
    ).status_code == 201
    assert_problem(await client.post("/students", json=a_student(), headers=key), 422)


async def test_a_refusal_is_replayed_too(client: Client) -> None:
    """The first answer was a 409 (email taken): the retry gets that 409, even once the email is free."""
    taken = await client.post("/students", json=a_student())
    key, body = a_key(), {"name": "Copy", "email": taken.json()["email"]}
    refused = assert_problem(await client.post("/students", json=body, headers=key), 409)
    assert (await client.delete(taken.headers["location"])).status_code == 204
    again = await client.post("/students", json=body, headers=key)
    assert_problem(again, 409)
    assert again.json() == refused
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_a_malformed_key_is_a_422_naming_the_header_and_writes_nothing(
    client: Client, db: asyncpg.Connection, value: str
) -> None:
    body = a_student()
    response = await client.post(
        "/students", json=body, headers={b"Idempotency-Key": value.encode("latin-1")}
    )
    assert_problem(response, 422, field="Idempotency-Key")
    assert await rows_with_email(db, body["email"]) == 0


async def test_keys_of_different_callers_never_collide(client: Client, migrated_url: str) -> None:
    other_caller = (await mint_key(migrated_url, "write")).key
    key = a_key()
    mine = await client.post("/courses", json={"code": unique("IK"), "title": "Mine"}, headers=key)
    theirs = await client.post(
        "/courses", json={"code": unique("IK"), "title": "Theirs"}, headers={**key, **bearer(other_caller)}
    )
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]


async def test_twenty_concurrent_requests_with_one_key_create_one_student_and_all_learn_its_id(
    client: Client, db: asyncpg.Connection
) -> None:
    """A client that retries before its first try answered. Without the key's lock each try
    would write, and all but one would get "email taken", never learning the student's id."""
    for _ in range(3):
        key, body = a_key(), a_student()
        answers = await asyncio.gather(*(client.post("/students", json=body, headers=key) for _ in range(20)))
        created = [a for a in answers if a.status_code == 201]
        busy = [a for a in answers if a.status_code == 409]
        assert len(created) + len(busy) == 20, [a.text for a in answers]
        assert created, "at least the first request creates"
        assert {a.json()["id"] for a in created} == {created[0].json()["id"]}
        for answer in busy:
            assert_problem(answer, 409)
            assert answer.headers["retry-after"]
            assert "Idempotency-Key" in answer.json()["detail"]
        assert await rows_with_email(db, body["email"]) == 1
        final = await client.post("/students", json=body, headers=key)
        assert final.json()["id"] == created[0].json()["id"]


async def test_a_request_is_a_409_while_the_first_with_its_key_is_in_flight(
    client: Client, db: asyncpg.Connection, migrated_url: str
) -> None:
    key, body = a_key(), a_student()
    blocker = await asyncpg.connect(migrated_url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE students IN EXCLUSIVE MODE")  # the first request's INSERT waits
        first = asyncio.create_task(client.post("/students", json=body, headers=key))
        await _until_waiting_on_a_lock(db)
        assert_problem(await client.post("/students", json=body, headers=key), 409)
        await tx.rollback()
        assert (await first).status_code == 201
    finally:
        await blocker.close()
    replay = await client.post("/students", json=body, headers=key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == (await first).json()


@pytest.fixture
async def impatient(migrated_url: str, admin_key: str) -> AsyncIterator[Client]:
    """A service whose statements give up after 300 ms, to get a 503 from a locked table."""
    app: Litestar = create_app(
        Settings(database_url=migrated_url, pool_min_size=1, pool_max_size=4, statement_timeout_ms=300)
    )
    held = HeldClient(app, admin_key)
    yield await held.start()
    await held.stop()


async def test_a_first_answer_that_was_a_5xx_leaves_the_key_unused(
    impatient: Client, db: asyncpg.Connection, migrated_url: str
) -> None:
    key, body = a_key(), a_student()
    blocker = await asyncpg.connect(migrated_url)
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE students IN EXCLUSIVE MODE")
            assert_problem(await impatient.post("/students", json=body, headers=key), 503)
    finally:
        await blocker.close()
    assert await rows_with_email(db, body["email"]) == 0
    retry = await impatient.post("/students", json=body, headers=key)
    assert retry.status_code == 201
    assert "idempotent-replayed" not in retry.headers


async def test_a_key_older_than_24_hours_is_forgotten_and_expired_in_batches(
    client: Client, db: asyncpg.Connection, settings: Settings
) -> None:
    key, body = a_key(), {"code": unique("IK"), "title": "Old"}
    assert (await client.post("/courses", json=body, headers=key)).status_code == 201
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = $1",
        key["Idempotency-Key"],
    )
    again = await client.post("/courses", json=body, headers=key)
    assert_problem(again, 409)  # processed afresh: the code is taken now
    assert "idempotent-replayed" not in again.headers

    await db.execute(
        "INSERT INTO idempotency_keys (caller, key, request, status, body, created_at)"
        " SELECT 0, 'old-' || n, '\\x00', 201, '{}', now() - interval '2 days'"
        "   FROM generate_series(1, 12000) n"
    )
    fresh = await db.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE created_at > now() - interval '1 hour'"
    )
    database = await Database.connect(settings)
    try:
        assert await idempotency.expire(database) == 12000
    finally:
        await database.close()
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == fresh


async def _until_waiting_on_a_lock(db: asyncpg.Connection) -> None:
    for _ in range(500):
        if await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first request never reached its INSERT")


async def test_two_idempotency_key_headers_are_a_422(client: Client, db: asyncpg.Connection) -> None:
    """A retry sending the key once must not miss a first try that carried it twice ("k, k")."""
    body = a_student()
    headers = [(b"Idempotency-Key", b"k1"), (b"Idempotency-Key", b"k1")]
    assert_problem(await client.post("/students", json=body, headers=headers), 422, field="Idempotency-Key")
    assert await rows_with_email(db, body["email"]) == 0


async def test_expiry_spares_an_expired_key_that_was_just_used_again(migrated_url: str) -> None:
    """Expiry picks an old row, then waits for a request that is reusing its key: once that
    request commits, the row holds a fresh answer and must stay."""
    writer, expirer = await asyncpg.connect(migrated_url), await asyncpg.connect(migrated_url)
    key = f"reused-{uuid.uuid4()}"
    try:
        await writer.execute(
            "INSERT INTO idempotency_keys (caller, key, request, status, body, created_at)"
            " VALUES (0, $1, '\\x00', 201, '{}', now() - interval '25 hours')",
            key,
        )
        async with writer.transaction():
            await writer.execute(
                IdempotencyQueries.record.sql, 0, key, b"\x01", 201, b'{"id": 1}', "/students/1"
            )
            expiring = asyncio.create_task(expirer.fetchval(IdempotencyQueries.expire.sql, 100))
            await asyncio.sleep(0.3)  # expiry has picked the row and waits for this transaction
            assert not expiring.done()
        await expiring
        assert await writer.fetchval("SELECT status FROM idempotency_keys WHERE key = $1", key) == 201
        assert await writer.fetchval(
            "SELECT created_at > now() - interval '1 hour' FROM idempotency_keys WHERE key = $1", key
        )
    finally:
        await writer.close()
        await expirer.close()
