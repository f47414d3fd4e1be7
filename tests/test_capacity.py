"""Course capacity, as API.md's "Capacity" describes it: the rules, then the races, for real."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import HeldClient, assert_problem, course_list, ids, new_course, new_student, unique

from service.app import create_app
from service.db import Query
from service.enrollments import repository
from service.enrollments.repository import EnrollmentQueries
from service.settings import Settings

Client = httpx.AsyncClient


def url(student_id: int) -> str:
    return f"/students/{student_id}/courses"


def pairs(*ids: tuple[int, int]) -> dict[str, Any]:
    return {"enrollments": [{"student_id": s, "course_id": c} for s, c in ids]}


async def limited_course(client: Client, capacity: int) -> int:
    course = await new_course(client, capacity=capacity)
    assert (course["capacity"], course["enrolled"]) == (capacity, 0)
    return int(course["id"])


async def students(client: Client, n: int) -> list[int]:
    return [(await new_student(client))["id"] for _ in range(n)]


async def seats(db: asyncpg.Connection, course_id: int) -> tuple[int | None, int | None, int]:
    """The course's capacity, its counter, and its enrollments counted."""
    row = await db.fetchrow(
        "SELECT capacity, enrolled, (SELECT count(*) FROM student_courses WHERE course_id = $1) AS n"
        "  FROM courses WHERE id = $1",
        course_id,
    )
    assert row is not None
    return row["capacity"], row["enrolled"], row["n"]


async def assert_counters_hold(db: asyncpg.Connection) -> None:
    """What must hold whatever ran: a course with a capacity counts exactly its enrollments,
    never more than its capacity; a course without one keeps no counter."""
    rows = await db.fetch(
        "SELECT c.id, c.capacity, c.enrolled, count(sc.course_id) AS n"
        "  FROM courses c LEFT JOIN student_courses sc ON sc.course_id = c.id"
        " GROUP BY c.id ORDER BY c.id"
    )
    for row in rows:
        if row["capacity"] is None:
            assert row["enrolled"] is None, dict(row)
        else:
            assert row["enrolled"] == row["n"] <= row["capacity"], dict(row)


async def newest_event(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT coalesce(max(id + n - 1), 0) FROM events"))


async def full(response: httpx.Response) -> list[int]:
    """The `full_course_ids` of a 409 problem."""
    problem = assert_problem(response, 409)
    assert problem["type"] == "urn:enrollment:problem:courses-full"
    return list(problem["full_course_ids"])


# The course: capacity and enrolled


async def test_a_course_has_no_limit_unless_created_with_a_capacity(client: Client) -> None:
    unlimited = await new_course(client)
    assert (unlimited["capacity"], unlimited["enrolled"]) == (None, 0)
    limited = await new_course(client, capacity=30)
    assert (limited["capacity"], limited["enrolled"]) == (30, 0)
    assert (await client.get(f"/courses/{limited['id']}")).json() == limited
    explicit = await new_course(client, capacity=None)
    assert explicit["capacity"] is None


@pytest.mark.parametrize("capacity", [1, 100_000])
async def test_capacity_bounds_are_inclusive(client: Client, capacity: int) -> None:
    assert (await new_course(client, capacity=capacity))["capacity"] == capacity


@pytest.mark.parametrize("capacity", [0, -1, 100_001, 2**63, "30", 30.0, 1.5, True, [30], {"n": 1}])
async def test_a_capacity_that_is_not_an_integer_1_to_100000_is_422_and_writes_nothing(
    client: Client, db: asyncpg.Connection, capacity: Any
) -> None:
    body = {"code": unique("CAP"), "title": "T", "capacity": capacity}
    assert_problem(await client.post("/courses", json=body), 422, field="capacity")
    course = await new_course(client)
    response = await client.patch(f"/courses/{course['id']}", json={"capacity": capacity})
    assert_problem(response, 422, field="capacity")
    assert await db.fetchval("SELECT count(*) FROM courses") == 1
    assert (await client.get(f"/courses/{course['id']}")).json() == course


async def test_enrolled_is_in_every_answer_about_a_course_limited_or_not(client: Client) -> None:
    unlimited, limited = (await new_course(client))["id"], await limited_course(client, 5)
    for student in await students(client, 3):
        course_list(await client.post(url(student), json={"course_ids": [unlimited, limited]}))
    for course in (unlimited, limited):
        assert (await client.get(f"/courses/{course}")).json()["enrolled"] == 3
    listed = {c["id"]: c for c in (await client.get("/courses")).json()["items"]}
    assert (listed[unlimited]["enrolled"], listed[limited]["enrolled"]) == (3, 3)
    renamed = (await client.patch(f"/courses/{unlimited}", json={"title": "Renamed"})).json()
    assert (renamed["capacity"], renamed["enrolled"]) == (None, 3)


async def test_enrolled_is_read_only(client: Client) -> None:
    course = await new_course(client, enrolled=7)
    assert course["enrolled"] == 0
    patched = await client.patch(f"/courses/{course['id']}", json={"enrolled": 7, "title": "New"})
    assert patched.json()["enrolled"] == 0


# Assignments against a capacity


async def test_the_last_seat_goes_to_the_first_and_the_next_is_refused_whole(
    client: Client, db: asyncpg.Connection
) -> None:
    course, other = await limited_course(client, 2), (await new_course(client))["id"]
    first, second, third = await students(client, 3)
    course_list(await client.post(url(first), json={"course_ids": [course]}))
    course_list(await client.post(url(second), json={"course_ids": [course, other]}))
    start = await newest_event(db)
    assert await full(await client.post(url(third), json={"course_ids": [other, course]})) == [course]
    assert course_list(await client.get(url(third))) == []  # not even the unlimited one
    assert await newest_event(db) == start  # and no event
    assert await seats(db, course) == (2, 2, 2)


async def test_every_full_course_is_named_sorted(client: Client, db: asyncpg.Connection) -> None:
    a, b, roomy = (
        await limited_course(client, 1),
        await limited_course(client, 1),
        await limited_course(client, 9),
    )
    taker, student = await students(client, 2)
    course_list(await client.post(url(taker), json={"course_ids": [b, a]}))
    response = await client.post(url(student), json={"course_ids": [b, roomy, a, b]})
    assert await full(response) == sorted([a, b])
    assert await seats(db, roomy) == (9, 0, 0)


async def test_a_course_the_student_already_takes_does_not_count_again(
    client: Client, db: asyncpg.Connection
) -> None:
    course, other = await limited_course(client, 1), await limited_course(client, 3)
    (student,) = await students(client, 1)
    first = course_list(await client.post(url(student), json={"course_ids": [course]}))
    again = course_list(await client.post(url(student), json={"course_ids": [course, other, course]}))
    assert ids(again) == sorted([course, other])
    assert again[ids(again).index(course)] == first[0]  # the same enrollment
    kept = course_list(await client.put(url(student), json={"course_ids": [course]}))
    assert ids(kept) == [course]
    assert await seats(db, course) == (1, 1, 1)
    assert await seats(db, other) == (3, 0, 0)  # the PUT gave its seat back


async def test_a_put_that_adds_a_full_course_is_refused_and_drops_nothing(
    client: Client, db: asyncpg.Connection
) -> None:
    course, kept = await limited_course(client, 1), await limited_course(client, 5)
    taker, student = await students(client, 2)
    course_list(await client.post(url(taker), json={"course_ids": [course]}))
    before = course_list(await client.post(url(student), json={"course_ids": [kept]}))
    assert await full(await client.put(url(student), json={"course_ids": [course]})) == [course]
    assert course_list(await client.get(url(student))) == before
    assert await seats(db, kept) == (5, 1, 1)


async def test_leaving_a_course_gives_its_seat_back_every_way(client: Client, db: asyncpg.Connection) -> None:
    course = await limited_course(client, 3)
    removed, replaced, deleted = await students(client, 3)
    for student in (removed, replaced, deleted):
        course_list(await client.post(url(student), json={"course_ids": [course]}))
    assert await seats(db, course) == (3, 3, 3)
    assert (await client.delete(f"{url(removed)}/{course}")).status_code == 204
    assert await seats(db, course) == (3, 2, 2)
    course_list(await client.put(url(replaced), json={"course_ids": []}))
    assert await seats(db, course) == (3, 1, 1)
    assert (await client.delete(f"/students/{deleted}")).status_code == 204
    assert await seats(db, course) == (3, 0, 0)
    assert (await client.get(f"/courses/{course}")).json()["enrolled"] == 0


async def test_a_bulk_enrollment_past_a_capacity_writes_nothing(
    client: Client, db: asyncpg.Connection
) -> None:
    course, roomy = await limited_course(client, 2), await limited_course(client, 10)
    s1, s2, s3 = await students(client, 3)
    assert (await client.post("/enrollments", json=pairs((s1, course)))).json() == {
        "created": 1,
        "existing": 0,
    }
    start = await newest_event(db)
    body = pairs((s1, course), (s2, course), (s3, course), (s3, roomy))
    assert await full(await client.post("/enrollments", json=body)) == [course]
    assert await newest_event(db) == start
    assert await seats(db, roomy) == (10, 0, 0)
    within = pairs((s1, course), (s2, course), (s2, course), (s3, roomy))  # the pair already there is free
    assert (await client.post("/enrollments", json=within)).json() == {"created": 2, "existing": 1}
    assert await seats(db, course) == (2, 2, 2)
    assert await seats(db, roomy) == (10, 1, 1)


async def test_unknown_ids_are_a_422_before_a_full_course_is_a_409(client: Client) -> None:
    course = await limited_course(client, 1)
    taker, student = await students(client, 2)
    course_list(await client.post(url(taker), json={"course_ids": [course]}))
    problem = assert_problem(await client.post(url(student), json={"course_ids": [course, 2**62]}), 422)
    assert problem["unknown_course_ids"] == [2**62]
    bulk = assert_problem(
        await client.post("/enrollments", json=pairs((student, course), (2**62, course))), 422
    )
    assert bulk["unknown_student_ids"] == [2**62]


# PATCH: setting, lowering and lifting a capacity


async def test_a_capacity_set_later_counts_the_enrollments_already_there(
    client: Client, db: asyncpg.Connection
) -> None:
    course = (await new_course(client))["id"]
    for student in await students(client, 3):
        course_list(await client.post(url(student), json={"course_ids": [course]}))
    problem = assert_problem(
        await client.patch(f"/courses/{course}", json={"capacity": 2, "title": "X"}), 409
    )
    assert problem["type"] == "urn:enrollment:problem:capacity-below-enrolled"
    assert (await client.get(f"/courses/{course}")).json()["title"] != "X"  # nothing changed
    assert await seats(db, course) == (None, None, 3)
    patched = (await client.patch(f"/courses/{course}", json={"capacity": 3})).json()
    assert (patched["capacity"], patched["enrolled"]) == (3, 3)
    assert await seats(db, course) == (3, 3, 3)
    (late,) = await students(client, 1)
    assert await full(await client.post(url(late), json={"course_ids": [course]})) == [course]


async def test_lowering_below_enrolled_is_409_and_null_lifts_the_limit(
    client: Client, db: asyncpg.Connection
) -> None:
    course = await limited_course(client, 5)
    for student in await students(client, 2):
        course_list(await client.post(url(student), json={"course_ids": [course]}))
    assert_problem(await client.patch(f"/courses/{course}", json={"capacity": 1}), 409)
    assert await seats(db, course) == (5, 2, 2)
    assert (await client.patch(f"/courses/{course}", json={"capacity": 2})).json()["capacity"] == 2
    lifted = (await client.patch(f"/courses/{course}", json={"capacity": None})).json()
    assert (lifted["capacity"], lifted["enrolled"]) == (None, 2)
    assert await seats(db, course) == (None, None, 2)
    for student in await students(client, 3):
        course_list(await client.post(url(student), json={"course_ids": [course]}))
    assert (await client.get(f"/courses/{course}")).json()["enrolled"] == 5


async def test_a_patch_without_capacity_keeps_it(client: Client) -> None:
    course = await limited_course(client, 4)
    patched = (await client.patch(f"/courses/{course}", json={"code": unique("KEEP")})).json()
    assert (patched["capacity"], patched["enrolled"]) == (4, 0)


async def test_a_capacity_change_is_one_course_updated_event_with_the_course_after_it(
    client: Client, db: asyncpg.Connection
) -> None:
    course = await limited_course(client, 4)
    (student,) = await students(client, 1)
    course_list(await client.post(url(student), json={"course_ids": [course]}))
    start = await newest_event(db)
    patched = (await client.patch(f"/courses/{course}", json={"capacity": 9})).json()
    same = (await client.patch(f"/courses/{course}", json={"capacity": 9})).json()
    assert same == patched
    page = (await client.get("/events", params={"after": start})).json()["items"]
    assert [(e["type"], e["data"]) for e in page] == [("course.updated", patched)]
    assert patched["enrolled"] == 1


async def test_the_course_events_carry_capacity_and_enrolled(client: Client, db: asyncpg.Connection) -> None:
    start = await newest_event(db)
    created = await new_course(client, capacity=3)
    renamed = (await client.patch(f"/courses/{created['id']}", json={"title": "Renamed"})).json()
    page = (await client.get("/events", params={"after": start})).json()["items"]
    assert [(e["type"], e["data"]) for e in page] == [
        ("course.created", created),
        ("course.updated", renamed),
    ]


# Races, through parallel HTTP requests against the real database


@pytest.fixture(scope="module")
async def racing(settings: Settings, admin_key: str) -> AsyncIterator[Client]:
    """A client for races: its requests wait for a pooled connection, and for the hot course's
    lock, as long as they must (a race test counts who won; on a busy machine a 503 after the
    default 2 s or 3 s is no answer to count)."""
    app = create_app(
        Settings(
            database_url=settings.database_url,
            pool_min_size=1,
            pool_max_size=20,
            pool_acquire_timeout_s=120,
            statement_timeout_ms=120_000,
        )
    )
    held = HeldClient(app, admin_key)
    yield await held.start()
    await held.stop()


async def many_students(db: asyncpg.Connection, n: int) -> list[int]:
    """n students, inserted directly: set-up for a race, not what it tests."""
    rows = await db.fetch(
        "INSERT INTO students (name, email) SELECT 'Racer', $1 || i || '@example.org'"
        "  FROM generate_series(1, $2::int) AS i RETURNING id",
        unique("racer"),
        n,
    )
    return [r["id"] for r in rows]


async def wait_for_lock_waiters(db: asyncpg.Connection, n: int) -> None:
    """Until n sessions of this database wait for a lock (no deadline that a slow machine could miss
    but the test's own)."""
    deadline = time.monotonic() + 60
    while True:
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting >= n:
            return
        assert time.monotonic() < deadline, f"{waiting} of {n} requests are waiting for a lock"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def holding(database_url: str, lock: str, row_id: int) -> AsyncIterator[None]:
    """`lock` (a SELECT ... FOR ...) held on the row by another session for the block's duration."""
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute(lock, row_id)
            yield
    finally:
        await holder.close()


def counting_naively() -> Query:
    """assign.sql as the naive design would write it: lock the course with a capacity, then
    count its enrollments with count(*) in the same statement (no counter)."""
    real = EnrollmentQueries.assign
    sql = real.sql.replace(
        "SELECT id, capacity, enrolled\n      FROM courses",
        "SELECT id, capacity,\n"
        "           (SELECT count(*) FROM student_courses sc WHERE sc.course_id = courses.id) AS enrolled\n"
        "      FROM courses",
    )
    sql, removed = re.subn(r"\), counted AS \(.*?\n(?=\), events AS)", "", sql, flags=re.DOTALL)
    assert sql.count("count(*) FROM student_courses") == 1, "assign.sql changed: update the naive copy"
    assert removed == 1, "assign.sql changed: update the naive copy"
    return real._replace(sql=sql)


@pytest.mark.parametrize("naive", [False, True], ids=["counter", "naive-count"])
async def test_two_requests_that_waited_for_the_course_lock_take_its_last_seat_once(
    client: Client,
    racing: Client,
    db: asyncpg.Connection,
    migrated_url: str,
    monkeypatch: pytest.MonkeyPatch,
    naive: bool,
) -> None:
    """Deterministic: both take their snapshot, then wait while another session holds the course.
    The naive count(*) of the second one misses the first one's committed enrollment."""
    if naive:
        monkeypatch.setattr(EnrollmentQueries, "assign", counting_naively())
    course = await limited_course(client, 1)
    first, second = await students(client, 2)
    async with holding(migrated_url, "SELECT id FROM courses WHERE id = $1 FOR UPDATE", course):
        posts = [
            asyncio.create_task(racing.post(url(s), json={"course_ids": [course]})) for s in (first, second)
        ]
        await wait_for_lock_waiters(db, 2)
    statuses = sorted(r.status_code for r in await asyncio.gather(*posts))
    capacity, _, taken = await seats(db, course)
    if naive:
        assert (statuses, taken) == ([200, 200], 2), "the naive count overbooks"
        return
    assert (statuses, taken) == ([200, 409], capacity)
    await assert_counters_hold(db)


@pytest.mark.parametrize("change", ["set", "lift"])
async def test_assignments_that_waited_for_a_capacity_change_are_admitted_on_the_new_capacity(
    client: Client, racing: Client, db: asyncpg.Connection, migrated_url: str, change: str
) -> None:
    """Their snapshots show the old capacity; the lock they waited for shows the new one. Never a
    422 (the course exists all along), never a seat the new capacity does not have."""
    seated, first, second = await students(client, 3)
    course = (await new_course(client, capacity=None if change == "set" else 1))["id"]
    course_list(await client.post(url(seated), json={"course_ids": [course]}))
    new_capacity = 2 if change == "set" else None
    async with holding(migrated_url, "SELECT id FROM courses WHERE id = $1 FOR UPDATE", course):
        patch = asyncio.create_task(racing.patch(f"/courses/{course}", json={"capacity": new_capacity}))
        await wait_for_lock_waiters(db, 1)  # the PATCH is first in line
        posts = [
            asyncio.create_task(racing.post(url(s), json={"course_ids": [course]})) for s in (first, second)
        ]
        await wait_for_lock_waiters(db, 3)
    assert (await patch).json()["capacity"] == new_capacity
    statuses = sorted(r.status_code for r in await asyncio.gather(*posts))
    if change == "set":
        assert statuses == [200, 409]  # one seat was left under the new capacity
        assert await seats(db, course) == (2, 2, 2)
    else:
        assert statuses == [200, 200]  # no limit any more
        assert await seats(db, course) == (None, None, 3)


async def test_a_seat_given_back_while_a_request_waited_goes_to_that_request(
    client: Client, racing: Client, db: asyncpg.Connection, migrated_url: str
) -> None:
    """Its snapshot shows the course full; the lock it then takes shows the seat free. The counter it
    writes must come from that lock too: PostgreSQL checks a CHECK constraint on the row version of
    the statement's snapshot before it re-reads a row changed meanwhile, and that version is full."""
    course = await limited_course(client, 1)
    leaving, waiting = await students(client, 2)
    course_list(await client.post(url(leaving), json={"course_ids": [course]}))
    async with holding(migrated_url, "SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE", waiting):
        post = asyncio.create_task(racing.post(url(waiting), json={"course_ids": [course]}))
        await wait_for_lock_waiters(db, 1)
        assert (await client.delete(f"{url(leaving)}/{course}")).status_code == 204
    assert ids(course_list(await post)) == [course]
    assert await seats(db, course) == (1, 1, 1)


def unlimited_path_without(*guards: str) -> Query:
    """assign_unlimited.sql without its guards against writing past a capacity: the capacity its
    snapshot shows (`limited`), and the one its lock shows (`stale`)."""
    real = EnrollmentQueries.assign_unlimited
    sql = real.sql
    for guard in guards:
        checked, unchecked = {
            "limited": ("     WHERE cardinality((SELECT course_ids FROM limited)) = 0\n", ""),
            "stale": ("FROM known WHERE capacity IS NOT NULL", "FROM known WHERE false"),
        }[guard]
        assert checked in sql, "assign_unlimited.sql changed: update the naive copy"
        sql = sql.replace(checked, unchecked)
    return real._replace(sql=sql)


@pytest.fixture
def nothing_seen_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every POST tries assign_unlimited.sql first, as in a process that never saw these courses."""
    monkeypatch.setattr(repository, "_limited_courses", set())


@pytest.mark.parametrize("naive", [False, True], ids=["guarded", "naive-unlimited-path"])
async def test_a_post_for_a_course_this_process_never_saw_limited_is_admitted_on_its_counter(
    client: Client,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    nothing_seen_limited: None,
    naive: bool,
) -> None:
    """assign_unlimited.sql goes first, and must hand a course with a capacity to assign.sql. (Without
    the `limited` guard alone the `stale` one would refuse the course at every try: a 503.)"""
    if naive:
        monkeypatch.setattr(EnrollmentQueries, "assign_unlimited", unlimited_path_without("limited", "stale"))
    course = await limited_course(client, 1)
    seated, late = await students(client, 2)
    course_list(await client.post(url(seated), json={"course_ids": [course]}))
    repository._limited_courses.clear()
    response = await client.post(url(late), json={"course_ids": [course]})
    capacity, _, taken = await seats(db, course)
    if naive:
        assert (response.status_code, capacity, taken) == (200, 1, 2), "the naive path overbooks"
        return
    assert await full(response) == [course]
    assert await seats(db, course) == (1, 1, 1)


async def test_a_post_takes_the_statement_for_what_the_process_last_saw_of_its_courses(
    client: Client, monkeypatch: pytest.MonkeyPatch, nothing_seen_limited: None
) -> None:
    """One round trip once the process has seen a course: with a capacity, straight to assign.sql;
    without one (lifted since), assign_unlimited.sql again. The other statement is made to fail."""
    course = await limited_course(client, 10)
    first, second, third = await students(client, 3)
    unlimited, limited = EnrollmentQueries.assign_unlimited, EnrollmentQueries.assign
    broken = unlimited._replace(sql="SELECT 1 / 0")

    course_list(await client.post(url(first), json={"course_ids": [course]}))  # both ran: learnt
    monkeypatch.setattr(EnrollmentQueries, "assign_unlimited", broken)
    assert ids(course_list(await client.post(url(second), json={"course_ids": [course]}))) == [course]

    assert (await client.patch(f"/courses/{course}", json={"capacity": None})).status_code == 200
    course_list(await client.post(url(first), json={"course_ids": [course]}))  # assign.sql: learnt
    monkeypatch.setattr(EnrollmentQueries, "assign_unlimited", unlimited)
    monkeypatch.setattr(EnrollmentQueries, "assign", limited._replace(sql="SELECT 1 / 0"))
    assert ids(course_list(await client.post(url(third), json={"course_ids": [course]}))) == [course]


async def test_a_post_for_a_missing_student_locks_no_course(
    client: Client, racing: Client, migrated_url: str, nothing_seen_limited: None
) -> None:
    """The student first, then the courses, in each statement: a 404 does not wait behind a PATCH
    holding the course, whichever statement the POST tries first."""
    course = (await new_course(client))["id"]
    async with holding(migrated_url, "SELECT id FROM courses WHERE id = $1 FOR UPDATE", course):
        missing = await asyncio.wait_for(racing.post(url(2**62), json={"course_ids": [course]}), 10)
    assert_problem(missing, 404)


@pytest.mark.parametrize("naive", [False, True], ids=["guarded", "naive-unlimited-path"])
async def test_a_capacity_set_while_a_request_waited_for_its_student_binds_that_request(
    client: Client,
    racing: Client,
    db: asyncpg.Connection,
    migrated_url: str,
    monkeypatch: pytest.MonkeyPatch,
    nothing_seen_limited: None,
    naive: bool,
) -> None:
    """The request's snapshot shows no limit, and the PATCH has committed before the request locks
    the course: its FOR KEY SHARE must still read the new capacity (PostgreSQL lets that lock take an
    older row version when a newer one changed no key: see sql/courses/lock.sql), and hand the course
    to assign.sql."""
    if naive:
        monkeypatch.setattr(EnrollmentQueries, "assign_unlimited", unlimited_path_without("stale"))
    course = (await new_course(client))["id"]
    seated, waiting = await students(client, 2)
    course_list(await client.post(url(seated), json={"course_ids": [course]}))
    async with holding(migrated_url, "SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE", waiting):
        post = asyncio.create_task(racing.post(url(waiting), json={"course_ids": [course]}))
        await wait_for_lock_waiters(db, 1)
        assert (await client.patch(f"/courses/{course}", json={"capacity": 1})).json()["enrolled"] == 1
    if naive:
        status = (await post).status_code
        capacity, _, taken = await seats(db, course)
        assert (status, capacity, taken) == (200, 1, 2), "the naive path overbooks"
        return
    assert await full(await post) == [course]
    assert await seats(db, course) == (1, 1, 1)


@pytest.mark.parametrize("write", ["post", "put", "remove", "delete-student", "bulk"])
async def test_a_write_queued_behind_a_capacity_change_does_not_deadlock_with_it(
    client: Client, racing: Client, db: asyncpg.Connection, migrated_url: str, write: str
) -> None:
    """A transaction holds the course as an enrollment does; a PATCH of its capacity queues for
    it (later lockers queue behind the PATCH); then a write of a student of that course arrives.
    Both end well once the course is let go, each counted, whatever kind of write it is."""
    course = await limited_course(client, 5)
    other = (await new_course(client))["id"]
    student = (await students(client, 1))[0]
    course_list(await client.post(url(student), json={"course_ids": [course]}))
    requests = {
        "post": lambda: racing.post(url(student), json={"course_ids": [course, other]}),
        "put": lambda: racing.put(url(student), json={"course_ids": [other]}),
        "remove": lambda: racing.delete(f"{url(student)}/{course}"),
        "delete-student": lambda: racing.delete(f"/students/{student}"),
        "bulk": lambda: racing.post("/enrollments", json=pairs((student, course), (student, other))),
    }
    async with holding(migrated_url, "SELECT id FROM courses WHERE id = $1 FOR NO KEY UPDATE", course):
        patch = asyncio.create_task(racing.patch(f"/courses/{course}", json={"capacity": 4}))
        await wait_for_lock_waiters(db, 1)
        racer = asyncio.create_task(requests[write]())
        await wait_for_lock_waiters(db, 2)
    assert (await patch).status_code == 200
    assert (await racer).status_code in (200, 204), (await racer).text
    await assert_counters_hold(db)


async def test_setting_a_capacity_waits_for_an_enrollment_in_flight_and_counts_it(
    client: Client, racing: Client, db: asyncpg.Connection, migrated_url: str
) -> None:
    """An enrollment of an unlimited course holds only FOR KEY SHARE on it; the PATCH's FOR UPDATE
    waits for it, so the count that follows includes it."""
    course = (await new_course(client))["id"]
    (student,) = await students(client, 1)
    writer = await asyncpg.connect(migrated_url)
    try:
        async with writer.transaction():
            await writer.execute(
                "INSERT INTO student_courses (student_id, course_id) VALUES ($1, $2)", student, course
            )
            patch = asyncio.create_task(racing.patch(f"/courses/{course}", json={"capacity": 1}))
            await wait_for_lock_waiters(db, 1)
    finally:
        await writer.close()
    assert (await patch).json()["enrolled"] == 1
    assert await seats(db, course) == (1, 1, 1)


async def test_of_200_students_racing_for_the_last_seat_exactly_one_gets_it(
    client: Client, racing: Client, db: asyncpg.Connection
) -> None:
    course = await limited_course(client, 5)
    for student in await students(client, 4):
        course_list(await client.post(url(student), json={"course_ids": [course]}))
    racers = await many_students(db, 200)
    responses = await asyncio.gather(*(racing.post(url(s), json={"course_ids": [course]}) for s in racers))
    assert Counter(r.status_code for r in responses) == {200: 1, 409: 199}
    for response in responses:
        if response.status_code == 409:
            assert await full(response) == [course]
    assert await seats(db, course) == (5, 5, 5)


async def test_100_requests_for_10_seats_enroll_exactly_10(
    client: Client, racing: Client, db: asyncpg.Connection
) -> None:
    course = await limited_course(client, 10)
    racers = await many_students(db, 100)
    responses = await asyncio.gather(*(racing.post(url(s), json={"course_ids": [course]}) for s in racers))
    assert Counter(r.status_code for r in responses) == {200: 10, 409: 90}
    winners = {s for s, r in zip(racers, responses, strict=True) if r.status_code == 200}
    rows = await db.fetch("SELECT student_id FROM student_courses WHERE course_id = $1", course)
    assert {r["student_id"] for r in rows} == winners
    assert await seats(db, course) == (10, 10, 10)


class Storm:
    """Writers of every kind on a few courses for `seconds`, and a checker reading the counters
    against the enrollments in single snapshots all along."""

    def __init__(self, client: Client, db: asyncpg.Connection, courses: list[int], people: list[int]) -> None:
        self.client, self.db, self.courses, self.people = client, db, courses, people
        self.rng = random.Random(13)
        self.answers: list[tuple[str, int, str]] = []  # (kind, status, problem type)
        self.violations: list[dict[str, Any]] = []
        self.stop = 0.0

    async def run(self, seconds: float, *, enrolling: int, changing: int) -> None:
        self.stop = time.monotonic() + seconds
        await asyncio.gather(
            *(self.enrolling() for _ in range(enrolling)),
            *(self.changing_capacities() for _ in range(changing)),
            self.coming_and_going(),
            self.checking(),
        )

    def record(self, kind: str, response: httpx.Response) -> None:
        problem = response.json().get("type", "") if response.status_code >= 400 else ""
        self.answers.append((kind, response.status_code, problem))

    async def enrolling(self) -> None:
        rng, client, courses = self.rng, self.client, self.courses
        while time.monotonic() < self.stop:
            student = url(rng.choice(self.people))
            kind = rng.choice(("post", "put", "remove", "bulk"))
            if kind == "post":
                response = await client.post(student, json={"course_ids": rng.sample(courses, 2)})
            elif kind == "put":
                response = await client.put(
                    student, json={"course_ids": rng.sample(courses, rng.randint(0, 3))}
                )
            elif kind == "remove":
                response = await client.delete(f"{student}/{rng.choice(courses)}")
            else:
                chosen = [(s, c) for s in rng.sample(self.people, 3) for c in rng.sample(courses, 2)]
                response = await client.post("/enrollments", json=pairs(*chosen))
            self.record(kind, response)

    async def changing_capacities(self) -> None:
        """Set, lower, raise and lift capacities (None: no limit)."""
        while time.monotonic() < self.stop:
            body = {"capacity": self.rng.choice((None, 1, 2, 3, 5, 8))}
            self.record(
                "patch", await self.client.patch(f"/courses/{self.rng.choice(self.courses)}", json=body)
            )

    async def coming_and_going(self) -> None:
        """Students who enroll and are deleted: their seats come back with them."""
        while time.monotonic() < self.stop:
            student = (await new_student(self.client))["id"]
            body = {"course_ids": self.rng.sample(self.courses, 3)}
            self.record("post", await self.client.post(url(student), json=body))
            self.record("delete-student", await self.client.delete(f"/students/{student}"))

    async def checking(self) -> None:
        while time.monotonic() < self.stop:
            rows = await self.db.fetch(
                "SELECT c.id, c.capacity, c.enrolled, count(sc.course_id) AS n"
                "  FROM courses c LEFT JOIN student_courses sc ON sc.course_id = c.id"
                " GROUP BY c.id"
                " HAVING c.enrolled > c.capacity"
                "     OR c.enrolled IS DISTINCT FROM"
                "        CASE WHEN c.capacity IS NOT NULL THEN count(sc.course_id) END"
            )
            self.violations.extend(dict(r) for r in rows)
            await asyncio.sleep(0.01)


async def test_every_kind_of_write_racing_on_the_same_courses_keeps_the_counters_true(
    client: Client, racing: Client, db: asyncpg.Connection
) -> None:
    """POST, PUT, bulk, removals, student deletions and capacity changes (set, lowered, raised,
    lifted) on a few small courses at once. Checked all along, in single snapshots: every counter
    equals its course's enrollments and stays within its capacity. No deadlock (a 500), no 422."""
    limited = [await limited_course(client, capacity) for capacity in (2, 3, 4, 6)]
    unlimited = [(await new_course(client))["id"] for _ in range(2)]
    storm = Storm(racing, db, limited + unlimited, await students(client, 16))
    await storm.run(4, enrolling=8, changing=2)
    assert not storm.violations, storm.violations[:5]
    await assert_counters_hold(db)
    statuses = Counter((kind, status) for kind, status, _ in storm.answers)
    expected = {"post": {200, 409}, "put": {200, 409}, "bulk": {200, 409}, "patch": {200, 409}}
    expected |= {"remove": {204, 404}, "delete-student": {204}}
    assert all(status in expected[kind] for kind, status in statuses), statuses
    conflicts = Counter((kind, problem) for kind, status, problem in storm.answers if status == 409)
    assert set(conflicts) <= {
        (kind, "urn:enrollment:problem:courses-full") for kind in ("post", "put", "bulk")
    } | {("patch", "urn:enrollment:problem:capacity-below-enrolled")}, conflicts
    for kind in ("post", "put", "bulk", "patch"):
        assert statuses[(kind, 200)] > 0, (kind, statuses)
    assert conflicts, "the storm never found a full course"
