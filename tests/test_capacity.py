"""Course capacity, as API.md's "Capacity" describes it."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from helpers import assert_problem, course_list, ids, new_course, new_student, unique

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
