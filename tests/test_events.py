"""The change feed, as API.md's "Events" describes it."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import ANY

import asyncpg
import httpx
import pytest
from helpers import (
    MAX_ID,
    HeldClient,
    assert_problem,
    bearer,
    in_process,
    mint_key,
    new_course,
    new_student,
    running_service,
    unique,
)
from litestar import Litestar

from service.app import create_app
from service.enrollments.repository import EnrollmentQueries
from service.events.feed import EventFeed, prune
from service.settings import Settings

Client = httpx.AsyncClient


# Every event id in the table (a row holds its statement's events: ids id, id + 1, ...).
EVENT_IDS = """
    SELECT e.id + coalesce(p.i, 1) - 1 AS id
      FROM events e
      LEFT JOIN LATERAL unnest(e.course_ids) WITH ORDINALITY AS p(course_id, i) ON true
"""


async def newest(db: asyncpg.Connection) -> int:
    """The newest event id now: a test reads what comes after it."""
    return int(await db.fetchval(f"SELECT coalesce(max(id), 0) FROM ({EVENT_IDS}) AS ids"))


async def committed_after(db: asyncpg.Connection, start: int) -> list[int]:
    """The ids of every event after `start` in the table, in order: a full read."""
    rows = await db.fetch(f"SELECT id FROM ({EVENT_IDS}) AS ids WHERE id > $1 ORDER BY id", start)
    return [r["id"] for r in rows]


async def feed_after(client: Client, after: int, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Every event after `after`, page by page, checking the pages' promises."""
    events: list[dict[str, Any]] = []
    while True:
        response = await client.get("/events", params={"after": after, "limit": limit})
        assert response.status_code == 200, response.text
        page = response.json()
        ids = [e["id"] for e in page["items"]]
        assert ids == sorted(ids)
        assert all(i > after for i in ids)
        events += page["items"]
        if page["next_after"] is None:
            return events
        assert page["next_after"] == ids[-1]
        after = ids[-1]


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(e["type"], e["data"]) for e in events]


# What each request records


async def test_each_write_records_the_events_api_md_lists_in_order(
    client: Client, db: asyncpg.Connection, admin_key: str
) -> None:
    start = await newest(db)
    key_id = await db.fetchval("SELECT id FROM api_keys WHERE key_hash = sha256($1)", admin_key.encode())
    student = await new_student(client, name="Ada")
    c1, c2, c3 = [await new_course(client) for _ in range(3)]
    url = f"/students/{student['id']}/courses"
    enrolled = (await client.post(url, json={"course_ids": [c2["id"], c1["id"]]})).json()
    replaced = (await client.put(url, json={"course_ids": [c2["id"], c3["id"]]})).json()
    renamed = (await client.patch(f"/students/{student['id']}", json={"name": "Ada King"})).json()
    retitled = (await client.patch(f"/courses/{c1['id']}", json={"title": "Engines"})).json()
    assert (await client.delete(f"{url}/{c3['id']}")).status_code == 204
    assert (await client.post(url, json={"course_ids": [c1["id"]]})).status_code == 200
    assert (await client.delete(f"/students/{student['id']}")).status_code == 204
    assert (await client.delete(f"/courses/{c3['id']}")).status_code == 204

    events = await feed_after(client, start)
    at = {c["id"]: c["enrolled_at"] for c in enrolled} | {c["id"]: c["enrolled_at"] for c in replaced}
    s = student["id"]

    def enrolled_in(course: dict[str, Any]) -> tuple[str, Any]:
        return (
            "enrollment.created",
            {"student_id": s, "course_id": course["id"], "enrolled_at": at[course["id"]]},
        )

    def dropped(course: dict[str, Any]) -> tuple[str, Any]:
        return ("enrollment.deleted", {"student_id": s, "course_id": course["id"]})

    c1_again = [e for e in events if e["type"] == "enrollment.created"][-1]["data"]
    assert kinds(events) == [
        ("student.created", student),
        ("course.created", c1),
        ("course.created", c2),
        ("course.created", c3),
        enrolled_in(c1),
        enrolled_in(c2),
        dropped(c1),  # the PUT: drops first, then adds
        enrolled_in(c3),
        ("student.updated", renamed),
        ("course.updated", retitled),
        dropped(c3),
        (
            "enrollment.created",
            {"student_id": s, "course_id": c1["id"], "enrolled_at": c1_again["enrolled_at"]},
        ),
        dropped(c1),  # deleting the student: each enrollment, then the student
        dropped(c2),
        ("student.deleted", {"id": s}),
        ("course.deleted", {"id": c3["id"]}),
    ]
    assert {e["actor"] for e in events} == {key_id}
    for event in events:
        assert set(event) == {"id", "type", "at", "actor", "data"}
        assert event["at"].endswith("Z")


async def test_failed_requests_and_requests_that_change_nothing_record_nothing(
    client: Client, db: asyncpg.Connection
) -> None:
    student = await new_student(client)
    course = await new_course(client)
    url = f"/students/{student['id']}/courses"
    assert (await client.post(url, json={"course_ids": [course["id"]]})).status_code == 200
    start = await newest(db)
    attempts = [
        client.post("/students", json={"name": "Twin", "email": student["email"].upper()}),  # 409
        client.post("/students", json={"name": ""}),  # 422
        client.post("/courses", json={"code": course["code"], "title": "Again"}),  # 409
        client.post(url, json={"course_ids": [course["id"]]}),  # already taken: 200, no change
        client.post(url, json={"course_ids": [course["id"], MAX_ID]}),  # unknown course: 422
        client.put(url, json={"course_ids": [course["id"]]}),  # the same set: 200, no change
        client.patch(f"/students/{student['id']}", json={"name": student["name"]}),  # the same name
        client.patch(f"/courses/{course['id']}", json={}),
        client.delete(f"/courses/{course['id']}"),  # 409: a student takes it
        client.delete(f"/students/{MAX_ID}"),  # 404
        client.delete(f"{url}/{MAX_ID}"),  # 404
        client.post(f"/students/{MAX_ID}/courses", json={"course_ids": [course["id"]]}),  # 404
    ]
    statuses = [(await attempt).status_code for attempt in attempts]
    assert statuses == [409, 422, 409, 200, 422, 200, 200, 200, 409, 404, 404, 404]
    assert await feed_after(client, start) == []
    assert await newest(db) == start


async def test_with_auth_off_the_actor_is_null(migrated_url: str, db: asyncpg.Connection) -> None:
    start = await newest(db)
    async with in_process(create_app(Settings(database_url=migrated_url, auth=False))) as anonymous:
        await new_student(anonymous)
        (event,) = await feed_after(anonymous, start)
    assert event["actor"] is None


async def test_deleting_a_student_records_the_enrollment_a_concurrent_request_just_added(
    client: Client, db: asyncpg.Connection, migrated_url: str
) -> None:
    student = await new_student(client)
    first, second = await new_course(client), await new_course(client)
    await client.post(f"/students/{student['id']}/courses", json={"course_ids": [first["id"]]})
    start = await newest(db)
    writer = await asyncpg.connect(migrated_url)
    try:
        transaction = writer.transaction()
        await transaction.start()  # holds the student's row, as an assignment in flight does
        await writer.fetchrow(EnrollmentQueries.assign.sql, student["id"], [second["id"]], None)
        deleting = asyncio.create_task(client.delete(f"/students/{student['id']}"))
        await asyncio.sleep(0.3)
        await transaction.commit()
        assert (await deleting).status_code == 204
    finally:
        await writer.close()
    assert kinds(await feed_after(client, start)) == [
        ("enrollment.created", {"student_id": student["id"], "course_id": second["id"], "enrolled_at": ANY}),
        ("enrollment.deleted", {"student_id": student["id"], "course_id": first["id"]}),
        ("enrollment.deleted", {"student_id": student["id"], "course_id": second["id"]}),
        ("student.deleted", {"id": student["id"]}),
    ]


async def test_a_student_with_more_enrollments_than_one_events_row_holds_can_be_deleted(
    client: Client, db: asyncpg.Connection
) -> None:
    student = await new_student(client)
    await db.execute(
        "INSERT INTO courses (code, title) SELECT 'MANY' || i, 'T' FROM generate_series(1, 16500) i"
    )
    await db.execute(
        "INSERT INTO student_courses (student_id, course_id)"
        " SELECT $1, id FROM courses WHERE code LIKE 'MANY%'",
        student["id"],
    )
    start = await newest(db)
    assert (await client.delete(f"/students/{student['id']}")).status_code == 204
    events = await feed_after(client, start)
    assert [e["type"] for e in events] == ["enrollment.deleted"] * 16500 + ["student.deleted"]
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})


# Paging and bad values


async def test_pages_follow_next_after_and_end_with_null(client: Client, db: asyncpg.Connection) -> None:
    start = await newest(db)
    for _ in range(5):
        await new_student(client)
    first = (await client.get("/events", params={"after": start, "limit": 2})).json()
    assert len(first["items"]) == 2
    assert first["next_after"] == first["items"][-1]["id"]
    walked = await feed_after(client, start, limit=2)
    assert len(walked) == 5
    last = (await client.get("/events", params={"after": walked[-1]["id"]})).json()
    assert last == {"items": [], "next_after": None}
    full = (await client.get("/events", params={"after": start, "limit": 5})).json()
    assert full["next_after"] is None, "a full page that ends on the last event answers null"


async def test_the_events_of_one_request_page_like_any_others(client: Client, db: asyncpg.Connection) -> None:
    """One statement's events share a row; the feed still pages through them one by one."""
    student = await new_student(client)
    courses = [await new_course(client) for _ in range(5)]
    start = await newest(db)
    url = f"/students/{student['id']}/courses"
    assert (await client.post(url, json={"course_ids": [c["id"] for c in courses]})).status_code == 200
    walked = await feed_after(client, start, limit=2)
    assert [e["data"]["course_id"] for e in walked] == [c["id"] for c in courses]
    assert [e["id"] for e in walked] == list(range(walked[0]["id"], walked[0]["id"] + 5))
    middle = (await client.get("/events", params={"after": walked[2]["id"], "limit": 1})).json()
    assert [e["id"] for e in middle["items"]] == [walked[3]["id"]]
    assert middle["next_after"] == walked[3]["id"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=1.0", "limit"),
        ("limit=x", "limit"),
        ("after=-1", "after"),
        ("after=1e3", "after"),
        (f"after={2**63}", "after"),
        ("wait=31", "wait"),
        ("wait=-1", "wait"),
        ("wait=1.5", "wait"),
        ("wait=true", "wait"),
    ],
)
async def test_a_bad_feed_parameter_is_422_naming_it(client: Client, query: str, field: str) -> None:
    assert_problem(await client.get(f"/events?{query}"), 422, field=field)


async def test_the_feed_needs_the_read_scope(client: Client, migrated_url: str) -> None:
    read = bearer((await mint_key(migrated_url, "read")).key)
    assert (await client.get("/events", headers=read)).status_code == 200
    anonymous = await client.get("/events", headers={"Authorization": "Bearer nope"})
    assert_problem(anonymous, 401)


# No gaps, no repeats


@pytest.fixture
async def feed_app(migrated_url: str, admin_key: str) -> AsyncIterator[tuple[Litestar, Client]]:
    """An app of its own, so a test may replace its feed's horizon."""
    app = create_app(Settings(database_url=migrated_url, pool_max_size=24))
    held = HeldClient(app, admin_key)
    yield app, await held.start()
    await held.stop()


async def slow_student(conn: asyncpg.Connection, *, seconds: float, commit: bool = True) -> None:
    """A write that takes its event id, then holds its transaction open (a long bulk write, say)."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(
            "WITH s AS (INSERT INTO students (name, email) VALUES ('Slow', $1)"
            "           RETURNING id, name, email, created_at)"
            " INSERT INTO events (type, data)"
            " SELECT 'student.created', student_json(id, name, email, created_at) FROM s",
            f"{unique('slow')}@example.org",
        )
        await asyncio.sleep(seconds)
    finally:
        await (transaction.commit() if commit else transaction.rollback())


async def wait_until_an_event_id_is_taken_after(db: asyncpg.Connection, start: int) -> None:
    for _ in range(500):
        if await db.fetchval("SELECT last_value FROM events_id_seq") > start:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the slow transaction took no event id")


def serve_naively(app: Litestar, monkeypatch: pytest.MonkeyPatch) -> None:
    """The naive feed: `id > after`, whatever is still in flight below it."""

    async def everything_committed() -> int:
        return MAX_ID

    monkeypatch.setattr(app.state["event_feed"], "fresh_horizon", everything_committed)


@pytest.mark.parametrize("naive", [False, True], ids=["feed", "naive-feed"])
async def test_an_event_committed_after_a_newer_one_is_still_delivered_before_it(
    feed_app: tuple[Litestar, Client],
    migrated_url: str,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    naive: bool,
) -> None:
    app, client = feed_app
    if naive:
        serve_naively(app, monkeypatch)
    start = await newest(db)
    slow = await asyncpg.connect(migrated_url)
    try:
        holding = asyncio.create_task(slow_student(slow, seconds=1.5))  # takes id start + 1
        await wait_until_an_event_id_is_taken_after(db, start)
        fast = await new_student(client)  # takes start + 2 and commits first
        seen = await feed_after(client, start)
        cursor = seen[-1]["id"] if seen else start
        await holding
    finally:
        await slow.close()
    seen += await feed_after(client, cursor)
    delivered = [e["id"] for e in seen]
    committed = await committed_after(db, start)
    assert len(committed) == 2
    if naive:
        assert delivered == committed[1:], "the naive feed skips the event of the slow transaction"
        return
    assert delivered == committed, "each event once, in id order"
    assert seen[-1]["data"] == fast


async def test_an_event_stays_hidden_while_an_older_transaction_runs_even_when_nothing_else_commits(
    feed_app: tuple[Litestar, Client], migrated_url: str, db: asyncpg.Connection
) -> None:
    """Two open writers, the older first: no snapshot lists them until one ends (a snapshot's
    xmax is the newest *completed* transaction + 1), and the newer may commit first."""
    _, client = feed_app
    start = await newest(db)
    older, newer = await asyncpg.connect(migrated_url), await asyncpg.connect(migrated_url)
    try:
        transactions = [older.transaction(), newer.transaction()]
        for conn, transaction in zip((older, newer), transactions, strict=True):
            await transaction.start()
            await conn.execute(
                "WITH s AS (INSERT INTO students (name, email) VALUES ('Open', $1)"
                "           RETURNING id, name, email, created_at)"
                " INSERT INTO events (type, data)"
                " SELECT 'student.created', student_json(id, name, email, created_at) FROM s",
                f"{unique('open')}@example.org",
            )
        await asyncio.sleep(0.5)  # ticks meanwhile, with nothing committing
        await transactions[1].commit()
        hidden = await feed_after(client, start)
        await transactions[0].commit()
    finally:
        await older.close()
        await newer.close()
    committed = await committed_after(db, start)
    assert hidden == [], "the newer event must wait for the older transaction"
    assert [e["id"] for e in await feed_after(client, start)] == committed


async def test_a_consumer_tailing_a_storm_of_writers_sees_every_event_exactly_once(
    feed_app: tuple[Litestar, Client], migrated_url: str, db: asyncpg.Connection
) -> None:
    delivered, committed = await tail_a_storm(feed_app, migrated_url, db)
    assert len(committed) > 100
    assert delivered == committed


async def test_the_naive_feed_loses_events_in_the_same_storm(
    feed_app: tuple[Litestar, Client],
    migrated_url: str,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The storm really races: against `id > after` alone the consumer misses events."""
    serve_naively(feed_app[0], monkeypatch)
    delivered, committed = await tail_a_storm(feed_app, migrated_url, db)
    assert set(delivered) < set(committed)


async def tail_a_storm(
    feed_app: tuple[Litestar, Client], migrated_url: str, db: asyncpg.Connection, seconds: float = 3.0
) -> tuple[list[int], list[int]]:
    """Fast writers through the API and slow transactions (some rolled back) race a consumer
    tailing the feed as fast as it can; answers the ids it got and those committed meanwhile."""
    _, client = feed_app
    start = await newest(db)
    stop = time.monotonic() + seconds
    rng = random.Random(7)

    async def fast_writer() -> None:
        course = await new_course(client)
        while time.monotonic() < stop:
            student = await new_student(client)
            await client.post(f"/students/{student['id']}/courses", json={"course_ids": [course["id"]]})

    async def slow_writer() -> None:
        conn = await asyncpg.connect(migrated_url)
        try:
            while time.monotonic() < stop:
                await slow_student(conn, seconds=rng.uniform(0.05, 0.4), commit=rng.random() < 0.8)
        finally:
            await conn.close()

    delivered: list[int] = []

    async def consumer() -> None:
        after = start
        while True:
            done = time.monotonic() > stop + 1.5
            page = (await client.get("/events", params={"after": after, "limit": 50, "wait": 1})).json()
            delivered.extend(e["id"] for e in page["items"])
            after = delivered[-1] if delivered else after
            if done and not page["items"]:
                return

    await asyncio.gather(consumer(), *(fast_writer() for _ in range(8)), *(slow_writer() for _ in range(4)))
    return delivered, await committed_after(db, start)


# Long polling


async def test_a_long_poll_answers_within_a_second_of_the_commit(
    client: Client, db: asyncpg.Connection
) -> None:
    start = await newest(db)
    waiting = asyncio.create_task(client.get("/events", params={"after": start, "wait": 10}))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    student = await new_student(client)
    committed = time.monotonic()
    page = (await waiting).json()
    assert time.monotonic() - committed < 1
    assert [e["data"] for e in page["items"]] == [student]


async def test_a_long_poll_on_a_quiet_feed_answers_an_empty_page_after_wait(
    client: Client, db: asyncpg.Connection
) -> None:
    began = time.monotonic()
    response = await client.get("/events", params={"after": await newest(db), "wait": 1})
    assert response.json() == {"items": [], "next_after": None}
    assert 1 <= time.monotonic() - began < 2.5


async def test_waiting_requests_hold_no_pooled_connection(migrated_url: str, admin_key: str) -> None:
    app = create_app(Settings(database_url=migrated_url, pool_min_size=1, pool_max_size=2))
    async with in_process(app, key=admin_key) as client:
        after = (await client.get("/events", params={"after": 0, "limit": 1000})).json()
        start = max([e["id"] for e in after["items"]], default=0)
        conn = await asyncpg.connect(migrated_url)
        try:
            start = max(start, await newest(conn))
        finally:
            await conn.close()
        waiters = [
            asyncio.create_task(client.get("/events", params={"after": start, "wait": 10}))
            for _ in range(200)
        ]
        await asyncio.sleep(1)
        began = time.monotonic()
        for _ in range(20):
            assert (await client.get("/students?limit=1")).status_code == 200
        assert time.monotonic() - began < 2, "ordinary requests wait for no long poll"
        assert app.state["db"].waiting == 0
        assert not any(w.done() for w in waiters)
        student = await new_student(client)
        pages = [(await w).json() for w in waiters]
    assert all([e["data"] for e in page["items"]] == [student] for page in pages)


async def test_shutdown_answers_the_long_polls_at_once(migrated_url: str, admin_key: str) -> None:
    with running_service(migrated_url) as (process, base):
        async with httpx.AsyncClient(base_url=base, headers=bearer(admin_key), timeout=40) as http:
            after = (await http.get("/events", params={"after": MAX_ID - 1})).status_code
            assert after == 200
            waiting = asyncio.create_task(http.get("/events", params={"after": MAX_ID - 1, "wait": 30}))
            await asyncio.sleep(1)
            process.send_signal(signal.SIGTERM)
            began = time.monotonic()
            response = await waiting
            assert response.json() == {"items": [], "next_after": None}
            assert time.monotonic() - began < 3
        assert process.wait(timeout=10) == 0


async def test_closing_the_feed_wakes_every_waiter() -> None:
    feed = EventFeed(retention_days=0)
    waiters = [asyncio.create_task(feed.wait_beyond(0, 30)) for _ in range(10)]
    await asyncio.sleep(0.05)
    feed.close()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)


# Retention


async def test_retention_removes_old_events_from_the_low_end_and_the_feed_answers_410_behind_it(
    app: Litestar, client: Client, db: asyncpg.Connection
) -> None:
    await new_student(client)
    old_through = await newest(db)
    await new_student(client)
    young = await newest(db)
    await db.execute("UPDATE events SET at = now() - interval '31 days' WHERE id <= $1", old_through)
    removed_before = await db.fetchval("SELECT through FROM events_removed")
    assert removed_before < old_through
    assert await prune(app.state["db"], retention_days=30) >= 1
    assert await db.fetchval("SELECT min(id) FROM events") == young  # a student.created: one event
    through = await db.fetchval("SELECT through FROM events_removed")
    assert through == old_through
    gone = assert_problem(await client.get("/events", params={"after": through - 1}), 410)
    assert "copy the lists again" in gone["detail"]
    assert gone["resume_after"] >= young, "a cursor from which nothing committed so far is missed"
    assert_problem(await client.get("/events", params={"after": 0}), 410)
    assert [e["id"] for e in await feed_after(client, through)] == [young]
    assert await prune(app.state["db"], retention_days=30) == 0, "young events stay"
