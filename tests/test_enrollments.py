"""The assignment rules of API.md, each with a test that fails if the rule breaks."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    BAD_IDS,
    MAX_ID,
    assert_problem,
    course_list,
    ids,
    in_process,
    new_course,
    new_student,
    walk_pages,
)

from service.app import create_app
from service.settings import Settings

Client = httpx.AsyncClient


async def enrolled_ids(db: asyncpg.Connection, student_id: int) -> list[int]:
    rows = await db.fetch(
        "SELECT course_id FROM student_courses WHERE student_id = $1 ORDER BY course_id", student_id
    )
    return [r["course_id"] for r in rows]


@pytest.fixture
async def student(client: Client) -> dict[str, Any]:
    return await new_student(client)


@pytest.fixture
async def courses(client: Client) -> list[dict[str, Any]]:
    return [await new_course(client) for _ in range(5)]


def url(student: dict[str, Any]) -> str:
    return f"/students/{student['id']}/courses"


# The named tests of the original task list (assign, list, refuse an unknown course)


async def test_assign_courses(client: Client, db: asyncpg.Connection) -> None:
    student = await new_student(client)
    courses = [await new_course(client) for _ in range(3)]
    response = await client.post(
        f"/students/{student['id']}/courses", json={"course_ids": [c["id"] for c in courses]}
    )
    answered = course_list(response)
    assert ids(answered) == [c["id"] for c in courses]
    assert [(c["code"], c["title"]) for c in answered] == [(c["code"], c["title"]) for c in courses]
    assert await db.fetchval("SELECT count(*) FROM student_courses WHERE student_id = $1", student["id"]) == 3


async def test_get_courses(client: Client) -> None:
    student = await new_student(client)
    assert course_list(await client.get(f"/students/{student['id']}/courses")) == []
    first, second = await new_course(client), await new_course(client)
    assigned = course_list(
        await client.post(
            f"/students/{student['id']}/courses", json={"course_ids": [second["id"], first["id"]]}
        )
    )
    listed = course_list(await client.get(f"/students/{student['id']}/courses"))
    assert listed == assigned
    assert ids(listed) == [first["id"], second["id"]]
    assert set(listed[0]) == {"id", "code", "title", "enrolled_at"}


async def test_assign_invalid_course(client: Client, db: asyncpg.Connection) -> None:
    student = await new_student(client)
    course = await new_course(client)
    missing = [MAX_ID, 999_999_999, 424_242]
    response = await client.post(
        f"/students/{student['id']}/courses", json={"course_ids": [missing[0], course["id"], *missing[1:]]}
    )
    body = assert_problem(response, 422)
    assert body["unknown_course_ids"] == sorted(missing)
    assert await db.fetchval("SELECT count(*) FROM student_courses") == 0


# POST: assign


async def test_assigning_the_same_courses_twice_adds_no_row_and_keeps_enrolled_at(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    body = {"course_ids": [courses[0]["id"], courses[1]["id"]]}
    first = course_list(await client.post(url(student), json=body))
    second = course_list(await client.post(url(student), json=body))
    assert second == first
    assert await enrolled_ids(db, student["id"]) == ids(first)


async def test_assigning_adds_to_what_the_student_already_has(
    client: Client, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    await client.post(url(student), json={"course_ids": [courses[3]["id"]]})
    answered = course_list(await client.post(url(student), json={"course_ids": [courses[0]["id"]]}))
    assert ids(answered) == [courses[0]["id"], courses[3]["id"]]


async def test_duplicates_in_the_array_count_once(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    cid = courses[2]["id"]
    answered = course_list(await client.post(url(student), json={"course_ids": [cid, cid, cid]}))
    assert ids(answered) == [cid]
    assert await enrolled_ids(db, student["id"]) == [cid]


async def test_one_unknown_id_makes_the_whole_assignment_a_422_that_writes_nothing(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    await client.post(url(student), json={"course_ids": [courses[0]["id"]]})
    before = course_list(await client.get(url(student)))
    unknown = [9_000_000_001, 9_000_000_000, 9_000_000_001]
    body = assert_problem(
        await client.post(url(student), json={"course_ids": [courses[1]["id"], *unknown, courses[2]["id"]]}),
        422,
    )
    assert body["unknown_course_ids"] == [9_000_000_000, 9_000_000_001]  # every one, sorted, once
    assert course_list(await client.get(url(student))) == before
    assert await enrolled_ids(db, student["id"]) == [courses[0]["id"]]


async def test_assigning_to_an_unknown_student_is_404_and_writes_nothing(
    client: Client, db: asyncpg.Connection, courses: list[dict[str, Any]]
) -> None:
    assert_problem(
        await client.post(f"/students/{MAX_ID}/courses", json={"course_ids": [courses[0]["id"]]}), 404
    )
    assert await db.fetchval("SELECT count(*) FROM student_courses") == 0


async def test_an_unknown_student_is_404_even_when_the_courses_are_unknown_too(client: Client) -> None:
    assert_problem(await client.post(f"/students/{MAX_ID}/courses", json={"course_ids": [MAX_ID]}), 404)


async def test_a_thousand_ids_are_accepted(
    client: Client, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    body = {"course_ids": [courses[i % 5]["id"] for i in range(1000)]}
    assert len(course_list(await client.post(url(student), json=body))) == 5


# Not a valid `course_ids` for either method (PUT's `[]` is valid: it clears, tested below).
BAD_COURSE_IDS: list[Any] = [
    list(range(1, 1002)),
    [0],
    [-1],
    [2**63],
    [99999999999999999999],
    ["1"],
    [1.0],
    [True],
    [None],
    "1",
    None,
    {"id": 1},
]


@pytest.mark.parametrize(
    ("method", "course_ids"),
    [("POST", [])] + [(method, bad) for method in ("POST", "PUT") for bad in BAD_COURSE_IDS],
)
async def test_out_of_bounds_or_mistyped_ids_are_422_naming_course_ids(
    client: Client,
    db: asyncpg.Connection,
    student: dict[str, Any],
    courses: list[dict[str, Any]],
    method: str,
    course_ids: Any,
) -> None:
    """A 422 that names `course_ids`, and the student's courses stay as they were (a PUT replaces nothing)."""
    course_list(await client.post(url(student), json={"course_ids": [courses[0]["id"]]}))
    response = await client.request(method, url(student), json={"course_ids": course_ids})
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"].startswith("course_ids"), body
    assert await db.fetchval("SELECT count(*) FROM student_courses") == 1
    assert await enrolled_ids(db, student["id"]) == [courses[0]["id"]]


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"", "application/json"),
        (b"{", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"{}", "application/json"),
        (b"\xff", "application/json"),
        (b'{"course_ids": [1]}', "text/plain"),
    ],
)
async def test_a_body_that_is_not_a_course_assignment_is_refused(
    client: Client, student: dict[str, Any], raw: bytes, content_type: str
) -> None:
    response = await client.post(url(student), content=raw, headers={"content-type": content_type})
    assert response.status_code in ((415, 422) if content_type != "application/json" else (422,))
    assert_problem(response, response.status_code)


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_a_bad_student_or_course_id_is_422_on_every_enrollment_route(
    client: Client, bad_id: str
) -> None:
    for method in ("GET", "POST", "PUT"):
        response = await client.request(method, f"/students/{bad_id}/courses", json={"course_ids": [1]})
        assert_problem(response, 422, field="student_id")
    assert_problem(await client.delete(f"/students/{bad_id}/courses/1"), 422, field="student_id")
    assert_problem(await client.delete(f"/students/1/courses/{bad_id}"), 422, field="course_id")
    assert_problem(await client.get(f"/courses/{bad_id}/students"), 422, field="course_id")


# GET


async def test_the_course_list_of_an_unknown_student_is_404(client: Client) -> None:
    assert_problem(await client.get(f"/students/{MAX_ID}/courses"), 404)


# PUT: replace


async def test_put_replaces_the_whole_set(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    kept, dropped, added = courses[0]["id"], courses[1]["id"], courses[2]["id"]
    first = course_list(await client.post(url(student), json={"course_ids": [kept, dropped]}))
    answered = course_list(await client.put(url(student), json={"course_ids": [added, kept, added]}))
    assert ids(answered) == sorted([kept, added])
    assert answered[0] == first[0]  # a kept enrollment keeps its enrolled_at
    assert await enrolled_ids(db, student["id"]) == sorted([kept, added])
    assert course_list(await client.get(url(student))) == answered


async def test_put_of_an_empty_list_clears_the_set(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    await client.post(url(student), json={"course_ids": [c["id"] for c in courses]})
    assert course_list(await client.put(url(student), json={"course_ids": []})) == []
    assert await enrolled_ids(db, student["id"]) == []


async def test_put_with_an_unknown_id_is_422_and_replaces_nothing(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    await client.post(url(student), json={"course_ids": [courses[0]["id"]]})
    body = assert_problem(
        await client.put(url(student), json={"course_ids": [courses[1]["id"], 777_777_777]}), 422
    )
    assert body["unknown_course_ids"] == [777_777_777]
    assert await enrolled_ids(db, student["id"]) == [courses[0]["id"]]


async def test_put_for_an_unknown_student_is_404_and_writes_nothing(
    client: Client, db: asyncpg.Connection, courses: list[dict[str, Any]]
) -> None:
    assert_problem(await client.put(f"/students/{MAX_ID}/courses", json={"course_ids": []}), 404)
    assert_problem(
        await client.put(f"/students/{MAX_ID}/courses", json={"course_ids": [courses[0]["id"]]}), 404
    )
    assert await db.fetchval("SELECT count(*) FROM student_courses") == 0


# DELETE one enrollment


async def test_removing_an_enrollment_answers_204_then_404(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    await client.post(url(student), json={"course_ids": [courses[0]["id"], courses[1]["id"]]})
    response = await client.delete(f"{url(student)}/{courses[0]['id']}")
    assert response.status_code == 204
    assert await enrolled_ids(db, student["id"]) == [courses[1]["id"]]
    assert_problem(await client.delete(f"{url(student)}/{courses[0]['id']}"), 404)


async def test_removing_from_an_unknown_student_or_course_is_404(
    client: Client, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    assert_problem(await client.delete(f"/students/{MAX_ID}/courses/{courses[0]['id']}"), 404)
    assert_problem(await client.delete(f"{url(student)}/{MAX_ID}"), 404)


# Deleting students and courses


async def test_deleting_a_student_takes_their_enrollments_with_them(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    await client.post(url(student), json={"course_ids": [c["id"] for c in courses]})
    assert (await client.delete(f"/students/{student['id']}")).status_code == 204
    assert await db.fetchval("SELECT count(*) FROM student_courses") == 0
    assert await db.fetchval("SELECT count(*) FROM courses") == 5


async def test_a_course_with_enrolled_students_cannot_be_deleted(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    cid = courses[0]["id"]
    await client.post(url(student), json={"course_ids": [cid]})
    assert_problem(await client.delete(f"/courses/{cid}"), 409)
    assert await enrolled_ids(db, student["id"]) == [cid]  # no enrollment dropped
    await client.delete(f"{url(student)}/{cid}")
    assert (await client.delete(f"/courses/{cid}")).status_code == 204


# GET /courses/{id}/students


async def test_the_students_of_a_course_walk_in_pages(client: Client, courses: list[dict[str, Any]]) -> None:
    cid = courses[0]["id"]
    students = [await new_student(client) for _ in range(7)]
    for s in students[::-1]:
        await client.post(url(s), json={"course_ids": [cid]})
    await client.post(
        url(await new_student(client)), json={"course_ids": [courses[1]["id"]]}
    )  # another course
    walk = await walk_pages(client, f"/courses/{cid}/students", limit=3)
    assert walk.items == students  # in id order, not in the order they enrolled
    assert walk.pages == 3


async def test_a_course_without_students_answers_an_empty_page(
    client: Client, courses: list[dict[str, Any]]
) -> None:
    response = await client.get(f"/courses/{courses[0]['id']}/students")
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_after": None}


async def test_the_students_of_an_unknown_course_is_404(client: Client) -> None:
    assert_problem(await client.get(f"/courses/{MAX_ID}/students"), 404)


@pytest.mark.parametrize(
    ("params", "field"), [({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"after": 0}, "after")]
)
async def test_course_student_pages_refuse_bad_parameters(
    client: Client, courses: list[dict[str, Any]], params: dict[str, Any], field: str
) -> None:
    assert_problem(await client.get(f"/courses/{courses[0]['id']}/students", params=params), 422, field=field)


# Concurrency, against the real database through parallel requests


async def test_fifty_identical_assignments_in_parallel_give_200s_and_no_duplicate(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    body = {"course_ids": [c["id"] for c in courses[:3]]}
    responses = await asyncio.gather(*(client.post(url(student), json=body) for _ in range(50)))
    for response in responses:
        assert ids(course_list(response)) == body["course_ids"]
    assert await enrolled_ids(db, student["id"]) == body["course_ids"]


async def test_fifty_overlapping_assignments_in_parallel_each_answer_their_courses(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    rng = random.Random(7)
    bodies = [{"course_ids": rng.sample([c["id"] for c in courses], 3)} for _ in range(50)]
    responses = await asyncio.gather(*(client.post(url(student), json=b) for b in bodies))
    for body, response in zip(bodies, responses, strict=True):
        assert set(body["course_ids"]) <= set(ids(course_list(response)))
    expected = sorted({cid for b in bodies for cid in b["course_ids"]})
    assert await enrolled_ids(db, student["id"]) == expected


async def test_parallel_puts_posts_and_removes_on_one_student_never_fail(
    client: Client, db: asyncpg.Connection, student: dict[str, Any], courses: list[dict[str, Any]]
) -> None:
    rng = random.Random(11)
    all_ids = [c["id"] for c in courses]
    requests = []
    for _ in range(60):
        kind = rng.choice(["post", "put", "delete"])
        if kind == "delete":
            requests.append(client.delete(f"{url(student)}/{rng.choice(all_ids)}"))
        else:
            requests.append(
                client.request(kind.upper(), url(student), json={"course_ids": rng.sample(all_ids, 3)})
            )
    responses = await asyncio.gather(*requests)
    assert {r.status_code for r in responses} <= {200, 204, 404}
    final = course_list(await client.get(url(student)))
    assert ids(final) == await enrolled_ids(db, student["id"])


async def test_courses_deleted_while_assignments_name_them_end_in_422_or_success(
    client: Client, db: asyncpg.Connection, courses: list[dict[str, Any]]
) -> None:
    students = [await new_student(client) for _ in range(12)]
    for _ in range(8):
        doomed = (await new_course(client))["id"]
        body = {"course_ids": [courses[0]["id"], doomed]}
        assigns = [client.post(url(s), json=body) for s in students]
        responses = await asyncio.gather(*assigns[:2], client.delete(f"/courses/{doomed}"), *assigns[2:])
        deleted = responses.pop(2)
        assert deleted.status_code in (204, 409), deleted.text
        for response in responses:
            if response.status_code == 422:
                assert assert_problem(response, 422)["unknown_course_ids"] == [doomed]
            else:
                assert doomed in ids(course_list(response))
        await db.execute("DELETE FROM student_courses WHERE course_id = $1", doomed)
    dangling = await db.fetchval(
        "SELECT count(*) FROM student_courses sc"
        " WHERE NOT EXISTS (SELECT FROM courses c WHERE c.id = sc.course_id)"
    )
    assert dangling == 0


async def test_a_student_deleted_while_assigned_to_ends_in_404_or_success(
    client: Client, db: asyncpg.Connection, courses: list[dict[str, Any]]
) -> None:
    students = [await new_student(client) for _ in range(50)]
    body = {"course_ids": [courses[0]["id"]]}
    requests = [
        r for s in students for r in (client.post(url(s), json=body), client.delete(f"/students/{s['id']}"))
    ]
    responses = await asyncio.gather(*requests)
    assert {r.status_code for r in responses[0::2]} <= {200, 404}
    assert {r.status_code for r in responses[1::2]} == {204}
    assert await db.fetchval("SELECT count(*) FROM student_courses") == 0


# One round trip


async def test_an_assignment_sends_exactly_one_statement_to_the_database(
    settings: Settings, client: Client, courses: list[dict[str, Any]], admin_key: str
) -> None:
    """One statement in all: the caller's key is checked from the cache, not the database."""
    student = await new_student(client)
    one_connection = Settings(
        database_url=settings.database_url,
        statement_cache_size=settings.statement_cache_size,
        pool_min_size=1,
        pool_max_size=1,
        auth_refresh_s=5,
    )
    app = create_app(one_connection)
    async with in_process(app, key=admin_key) as counted:
        await counted.get(f"/students/{student['id']}")  # the first request verifies the key
        statements: list[str] = []
        async with app.state.db.pool.acquire() as conn:
            conn.add_query_logger(lambda record: statements.append(record.query))
        response = await counted.post(url(student), json={"course_ids": [c["id"] for c in courses[:3]]})
        assert len(course_list(response)) == 3
        assert len(statements) == 1, statements
        assert "INSERT INTO student_courses" in statements[0]
        statements.clear()
        course_list(await counted.get(url(student)))
        assert len(statements) == 1, statements
