"""POST /enrollments, as API.md's "Bulk enrollment" describes it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import MAX_ID, assert_problem, new_course, new_student

Client = httpx.AsyncClient


def pairs(*ids: tuple[int, int]) -> dict[str, Any]:
    return {"enrollments": [{"student_id": s, "course_id": c} for s, c in ids]}


async def enrolled(db: asyncpg.Connection) -> set[tuple[int, int]]:
    return {
        (r["student_id"], r["course_id"])
        for r in await db.fetch("SELECT student_id, course_id FROM student_courses")
    }


@pytest.fixture
async def people(client: Client) -> tuple[list[int], list[int]]:
    """Four students and three courses."""
    students = [(await new_student(client))["id"] for _ in range(4)]
    courses = [(await new_course(client))["id"] for _ in range(3)]
    return students, courses


async def test_bulk_enrollment_adds_the_pairs_and_counts_what_was_there(
    client: Client, db: asyncpg.Connection, people: tuple[list[int], list[int]]
) -> None:
    (s1, s2, s3, _), (c1, c2, c3) = people
    assert (await client.post(f"/students/{s1}/courses", json={"course_ids": [c1]})).status_code == 200
    body = pairs((s1, c1), (s1, c2), (s2, c3), (s1, c2), (s3, c1))  # one there already, one repeated
    response = await client.post("/enrollments", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"created": 3, "existing": 1}
    assert await enrolled(db) == {(s1, c1), (s1, c2), (s2, c3), (s3, c1)}
    again = await client.post("/enrollments", json=body)
    assert again.json() == {"created": 0, "existing": 4}, "idempotent"
    assert await enrolled(db) == {(s1, c1), (s1, c2), (s2, c3), (s3, c1)}


async def test_an_unknown_student_or_course_writes_nothing_and_names_every_one_sorted(
    client: Client, db: asyncpg.Connection, people: tuple[list[int], list[int]]
) -> None:
    (s1, *_), (c1, *_) = people
    start = await db.fetchval("SELECT coalesce(max(id), 0) FROM events")
    body = pairs((s1, c1), (MAX_ID, c1), (s1, MAX_ID - 1), (MAX_ID - 5, MAX_ID - 1), (MAX_ID - 5, c1))
    problem = assert_problem(await client.post("/enrollments", json=body), 422)
    assert problem["unknown_student_ids"] == [MAX_ID - 5, MAX_ID]
    assert problem["unknown_course_ids"] == [MAX_ID - 1]
    only_courses = assert_problem(await client.post("/enrollments", json=pairs((s1, MAX_ID))), 422)
    assert (only_courses["unknown_student_ids"], only_courses["unknown_course_ids"]) == ([], [MAX_ID])
    assert await enrolled(db) == set()
    assert await db.fetchval("SELECT coalesce(max(id), 0) FROM events") == start


async def test_each_new_enrollment_is_one_event_in_student_then_course_order(
    client: Client, db: asyncpg.Connection, people: tuple[list[int], list[int]]
) -> None:
    (s1, s2, *_), (c1, c2, _) = people
    await client.post(f"/students/{s2}/courses", json={"course_ids": [c1]})
    start = await db.fetchval("SELECT coalesce(max(id), 0) FROM events")
    await client.post("/enrollments", json=pairs((s2, c2), (s1, c2), (s2, c1), (s1, c1)))
    page = (await client.get("/events", params={"after": start})).json()
    got = [(e["type"], e["data"]["student_id"], e["data"]["course_id"]) for e in page["items"]]
    assert got == [
        ("enrollment.created", s1, c1),
        ("enrollment.created", s1, c2),
        ("enrollment.created", s2, c2),
    ]


async def test_the_feed_pages_through_bulk_rows_one_event_at_a_time(
    client: Client, db: asyncpg.Connection, people: tuple[list[int], list[int]]
) -> None:
    students, courses = people
    start = await db.fetchval("SELECT coalesce(max(id + n - 1), 0) FROM events")
    first = [(s, c) for s in students[:2] for c in courses]
    second = [(s, c) for s in students[2:] for c in courses]
    await client.post("/enrollments", json=pairs(*first))
    await client.post("/enrollments", json=pairs(*second))
    seen: list[tuple[int, int]] = []
    after, pages = start, 0
    while True:
        page = (await client.get("/events", params={"after": after, "limit": 4})).json()
        seen += [(e["data"]["student_id"], e["data"]["course_id"]) for e in page["items"]]
        pages += 1
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == sorted(first) + sorted(second)
    assert pages == 3  # 12 events, 4 a page, across the two rows


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enrollments": []}, "enrollments"),
        ({}, "enrollments"),
        ({"enrollments": [{"student_id": 1}]}, "enrollments[0].course_id"),
        ({"enrollments": [{"student_id": "1", "course_id": 1}]}, "enrollments[0].student_id"),
        ({"enrollments": [{"student_id": 1, "course_id": 1.0}]}, "enrollments[0].course_id"),
        ({"enrollments": [{"student_id": 0, "course_id": 1}]}, "enrollments[0].student_id"),
        ({"enrollments": [{"student_id": 1, "course_id": 2**63}]}, "enrollments[0].course_id"),
        ({"enrollments": {"student_id": 1, "course_id": 1}}, "enrollments"),
    ],
)
async def test_a_bad_bulk_body_is_422_naming_the_field(
    client: Client, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    assert_problem(await client.post("/enrollments", json=body), 422, field=field)
    assert await enrolled(db) == set()


async def test_10000_pairs_are_accepted_and_10001_are_not(
    client: Client, db: asyncpg.Connection, people: tuple[list[int], list[int]]
) -> None:
    (s1, *_), (c1, *_) = people
    most = pairs(*[(s1, c1)] * 10_000)
    assert len(json.dumps(most)) > 64 * 1024  # more than any other route takes
    assert (await client.post("/enrollments", json=most)).json() == {"created": 1, "existing": 0}
    assert_problem(
        await client.post("/enrollments", json=pairs(*[(s1, c1)] * 10_001)), 422, field="enrollments"
    )


async def test_a_body_over_1_mib_is_413(client: Client) -> None:
    padding = " " * (1024 * 1024)
    body = f'{{"enrollments": [{{"student_id": 1, "course_id": 1}}]{padding}}}'.encode()
    response = await client.post("/enrollments", content=body, headers={"content-type": "application/json"})
    assert_problem(response, 413)


async def test_bulk_and_per_student_requests_racing_never_deadlock_or_fail(
    client: Client, db: asyncpg.Connection
) -> None:
    """Bulk requests over shuffled pairs race per-student POST, PUT and DELETE on the same rows."""
    students = [(await new_student(client))["id"] for _ in range(12)]
    courses = [(await new_course(client))["id"] for _ in range(6)]
    rng = random.Random(11)
    stop = time.monotonic() + 3
    statuses: list[int] = []

    async def bulk() -> None:
        while time.monotonic() < stop:
            chosen = [(s, c) for s in students for c in courses if rng.random() < 0.5]
            rng.shuffle(chosen)
            statuses.append((await client.post("/enrollments", json=pairs(*chosen))).status_code)

    async def per_student() -> None:
        while time.monotonic() < stop:
            student, course = rng.choice(students), rng.choice(courses)
            url = f"/students/{student}/courses"
            action = rng.choice(("post", "put", "delete"))
            if action == "post":
                response = await client.post(url, json={"course_ids": rng.sample(courses, 3)})
            elif action == "put":
                response = await client.put(url, json={"course_ids": rng.sample(courses, 2)})
            else:
                response = await client.delete(f"{url}/{course}")
            statuses.append(response.status_code)

    await asyncio.gather(*(bulk() for _ in range(4)), *(per_student() for _ in range(8)))
    assert statuses
    assert set(statuses) <= {200, 204, 404}, sorted(set(statuses))
    assert statuses.count(200) > 20
    rows = await db.fetchval("SELECT count(*) FROM student_courses")
    assert rows == len(await enrolled(db)) <= len(students) * len(courses)
