"""The /courses resource, as API.md describes it."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from helpers import BAD_IDS, MAX_ID, assert_problem, new_course, unique, walk_pages

Client = httpx.AsyncClient


async def test_creating_a_course_answers_201_with_location_and_body(client: Client) -> None:
    response = await client.post("/courses", json={"code": "Cs101", "title": "Programming"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "code", "title", "capacity", "enrolled", "created_at"}
    assert body["code"] == "Cs101"  # stored as given
    assert (body["capacity"], body["enrolled"]) == (None, 0)  # no limit unless one is given
    assert body["title"] == "Programming"
    assert body["created_at"].endswith("Z")
    assert response.headers["location"] == f"/courses/{body['id']}"
    assert (await client.get(response.headers["location"])).json() == body


async def test_a_taken_code_is_409_case_insensitively(client: Client, db: asyncpg.Connection) -> None:
    await new_course(client, code="MATH1")
    assert_problem(await client.post("/courses", json={"code": "math1", "title": "Again"}), 409)
    assert await db.fetchval("SELECT count(*) FROM courses") == 1


async def test_concurrent_creates_with_the_same_code_give_exactly_one_201(
    client: Client, db: asyncpg.Connection
) -> None:
    body = {"code": "RACE1", "title": "Racing"}
    responses = await asyncio.gather(*(client.post("/courses", json=body) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    assert await db.fetchval("SELECT count(*) FROM courses") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "T"}, "code"),
        ({"code": "C1"}, "title"),
        ({"code": "", "title": "T"}, "code"),
        ({"code": "  ", "title": "T"}, "code"),
        ({"code": "C" * 33, "title": "T"}, "code"),
        ({"code": 101, "title": "T"}, "code"),
        ({"code": "C1", "title": ""}, "title"),
        ({"code": "C1", "title": "\t\n"}, "title"),
        ({"code": "C1", "title": "t" * 201}, "title"),
        ({"code": "C1", "title": False}, "title"),
        ({"code": "C\u00001", "title": "T"}, "code"),  # PostgreSQL text cannot hold NUL
        ({"code": "C1", "title": "T\u0000"}, "title"),
    ],
)
async def test_an_invalid_field_is_422_naming_it_and_writes_nothing(
    client: Client, db: asyncpg.Connection, body: dict[str, object], field: str
) -> None:
    assert_problem(await client.post("/courses", json=body), 422, field=field)
    assert await db.fetchval("SELECT count(*) FROM courses") == 0


async def test_bounds_are_inclusive(client: Client) -> None:
    course = await new_course(client, code="C" * 32, title="t" * 200)
    assert len(course["code"]) == 32
    assert len(course["title"]) == 200


async def test_get_of_a_missing_course_is_404(client: Client) -> None:
    assert_problem(await client.get(f"/courses/{MAX_ID}"), 404)


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_id_outside_1_to_2_63_minus_1_is_422(client: Client, method: str, bad_id: str) -> None:
    response = await client.request(method, f"/courses/{bad_id}", json={"title": "X"})
    assert_problem(response, 422, field="course_id")


async def test_patch_changes_only_the_fields_given(client: Client) -> None:
    course = await new_course(client, code="OLD1", title="Old")
    response = await client.patch(f"/courses/{course['id']}", json={"title": "New"})
    assert response.status_code == 200
    assert response.json() == {**course, "title": "New"}
    response = await client.patch(f"/courses/{course['id']}", json={"code": "NEW1"})
    assert response.json() == {**course, "title": "New", "code": "NEW1"}


async def test_patch_to_a_taken_code_is_409_and_changes_nothing(client: Client) -> None:
    await new_course(client, code="TAKEN")
    course = await new_course(client)
    assert_problem(await client.patch(f"/courses/{course['id']}", json={"code": "taken"}), 409)
    assert (await client.get(f"/courses/{course['id']}")).json() == course


@pytest.mark.parametrize(("body", "field"), [({"code": ""}, "code"), ({"title": None}, "title")])
async def test_patch_with_an_invalid_field_is_422(
    client: Client, body: dict[str, object], field: str
) -> None:
    course = await new_course(client)
    assert_problem(await client.patch(f"/courses/{course['id']}", json=body), 422, field=field)
    assert (await client.get(f"/courses/{course['id']}")).json() == course


async def test_patch_of_a_missing_course_is_404(client: Client) -> None:
    assert_problem(await client.patch("/courses/987654321", json={"title": "X"}), 404)


async def test_delete_answers_204_then_the_course_is_gone(client: Client) -> None:
    course = await new_course(client)
    response = await client.delete(f"/courses/{course['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(f"/courses/{course['id']}"), 404)
    assert_problem(await client.delete(f"/courses/{course['id']}"), 404)


async def test_listing_walks_every_course_once_in_id_order(client: Client) -> None:
    created = [await new_course(client, code=unique("W")) for _ in range(5)]
    walk = await walk_pages(client, "/courses", limit=2)
    assert walk.items == created
    assert walk.pages == 3  # 2 + 2 + 1: no empty page at the end


@pytest.mark.parametrize(
    ("params", "field"), [({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"after": 0}, "after")]
)
async def test_list_parameters_out_of_bounds_are_422(
    client: Client, params: dict[str, int], field: str
) -> None:
    assert_problem(await client.get("/courses", params=params), 422, field=field)
