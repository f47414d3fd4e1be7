"""The /students resource, as API.md describes it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest
from helpers import BAD_IDS, MAX_ID, assert_problem, new_student, unique, walk_pages

Client = httpx.AsyncClient


def assert_student_shape(body: dict[str, object]) -> None:
    assert set(body) == {"id", "name", "email", "created_at"}
    assert isinstance(body["id"], int)
    assert body["id"] >= 1
    created = datetime.fromisoformat(str(body["created_at"]).replace("Z", "+00:00"))
    assert created.utcoffset() == timedelta(0)


async def test_creating_a_student_answers_201_with_location_and_body(client: Client) -> None:
    response = await client.post("/students", json={"name": "Grace Hopper", "email": "Grace@Navy.mil"})
    assert response.status_code == 201
    body = response.json()
    assert_student_shape(body)
    assert body["name"] == "Grace Hopper"
    assert body["email"] == "Grace@Navy.mil"  # stored as given
    assert response.headers["location"] == f"/students/{body['id']}"
    assert (await client.get(response.headers["location"])).json() == body


async def test_unknown_fields_in_the_body_are_ignored(client: Client, db: asyncpg.Connection) -> None:
    """Even `id` and `created_at`: the server assigns them, so a caller can neither pick nor take an id."""
    existing = await new_student(client)
    for taken_or_unissued in (existing["id"], MAX_ID):
        body = {
            "name": "A",
            "email": unique("a") + "@b.io",
            "role": "x",
            "created_at": "1970-01-01T00:00:00Z",
        }
        response = await client.post("/students", json={**body, "id": taken_or_unissued})
        assert response.status_code == 201, response.text
        created = response.json()
        assert_student_shape(created)  # no `role`
        assert (created["name"], created["email"]) == ("A", body["email"])
        assert created["id"] not in (existing["id"], MAX_ID)
        assert not created["created_at"].startswith("1970")
        assert (await client.get(response.headers["location"])).json() == created
    assert (await client.get(f"/students/{existing['id']}")).json() == existing
    assert_problem(await client.get(f"/students/{MAX_ID}"), 404)
    assert await db.fetchval("SELECT count(*) FROM students") == 3


async def test_a_taken_email_is_409_case_insensitively(client: Client, db: asyncpg.Connection) -> None:
    await new_student(client, email="turing@example.org")
    response = await client.post("/students", json={"name": "Alan", "email": "TURING@example.ORG"})
    assert_problem(response, 409)
    assert await db.fetchval("SELECT count(*) FROM students") == 1


async def test_concurrent_creates_with_the_same_email_give_exactly_one_201(
    client: Client, db: asyncpg.Connection
) -> None:
    body = {"name": "Racer", "email": "race@example.org"}
    responses = await asyncio.gather(*(client.post("/students", json=body) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19
    assert await db.fetchval("SELECT count(*) FROM students") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@b.io"}, "name"),
        ({"name": "A"}, "email"),
        ({"name": "", "email": "a@b.io"}, "name"),
        ({"name": "   ", "email": "a@b.io"}, "name"),
        ({"name": "x" * 201, "email": "a@b.io"}, "name"),
        ({"name": 5, "email": "a@b.io"}, "name"),
        ({"name": None, "email": "a@b.io"}, "name"),
        ({"name": "A", "email": "not-an-email"}, "email"),
        ({"name": "A", "email": "a b@c.io"}, "email"),
        ({"name": "A", "email": "a@b"}, "email"),
        ({"name": "A", "email": ""}, "email"),
        ({"name": "A", "email": "a@" + "b" * 250 + ".io"}, "email"),
        ({"name": "A", "email": ["a@b.io"]}, "email"),
        ({"name": "A\u0000B", "email": "a@b.io"}, "name"),  # PostgreSQL text cannot hold NUL
        ({"name": "A", "email": "a\u0000@b.io"}, "email"),
    ],
)
async def test_an_invalid_field_is_422_naming_it_and_writes_nothing(
    client: Client, db: asyncpg.Connection, body: dict[str, object], field: str
) -> None:
    assert_problem(await client.post("/students", json=body), 422, field=field)
    assert await db.fetchval("SELECT count(*) FROM students") == 0


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"x"', b"null", b"\xff\xfe", b"42"])
async def test_a_body_that_is_not_a_json_object_is_422(client: Client, raw: bytes) -> None:
    response = await client.post("/students", content=raw, headers={"content-type": "application/json"})
    assert_problem(response, 422)


async def test_a_name_of_exactly_200_chars_is_accepted(client: Client) -> None:
    student = await new_student(client, name="é" * 200)
    assert len(student["name"]) == 200


async def test_get_answers_the_student(client: Client) -> None:
    student = await new_student(client)
    response = await client.get(f"/students/{student['id']}")
    assert response.status_code == 200
    assert response.json() == student


async def test_get_of_a_missing_student_is_404(client: Client) -> None:
    assert_problem(await client.get(f"/students/{MAX_ID}"), 404)


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_an_id_outside_1_to_2_63_minus_1_is_422(client: Client, method: str, bad_id: str) -> None:
    response = await client.request(method, f"/students/{bad_id}", json={"name": "X"})
    assert_problem(response, 422, field="student_id")


async def test_patch_changes_only_the_fields_given(client: Client) -> None:
    student = await new_student(client, name="Old", email="old@example.org")
    response = await client.patch(f"/students/{student['id']}", json={"name": "New"})
    assert response.status_code == 200
    assert response.json() == {**student, "name": "New"}
    response = await client.patch(f"/students/{student['id']}", json={"email": "new@example.org"})
    assert response.json() == {**student, "name": "New", "email": "new@example.org"}


async def test_patch_with_an_empty_body_changes_nothing(client: Client) -> None:
    student = await new_student(client)
    response = await client.patch(f"/students/{student['id']}", json={})
    assert response.status_code == 200
    assert response.json() == student


async def test_patch_to_a_taken_email_is_409_and_changes_nothing(client: Client) -> None:
    await new_student(client, email="taken@example.org")
    student = await new_student(client)
    assert_problem(await client.patch(f"/students/{student['id']}", json={"email": "TAKEN@example.org"}), 409)
    assert (await client.get(f"/students/{student['id']}")).json() == student


async def test_patch_to_ones_own_email_in_another_case_is_allowed(client: Client) -> None:
    student = await new_student(client, email="me@example.org")
    response = await client.patch(f"/students/{student['id']}", json={"email": "ME@example.org"})
    assert response.status_code == 200
    assert response.json()["email"] == "ME@example.org"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": ""}, "name"), ({"name": None}, "name"), ({"email": "nope"}, "email"), ({"email": 1}, "email")],
)
async def test_patch_with_an_invalid_field_is_422_and_changes_nothing(
    client: Client, body: dict[str, object], field: str
) -> None:
    student = await new_student(client)
    assert_problem(await client.patch(f"/students/{student['id']}", json=body), 422, field=field)
    assert (await client.get(f"/students/{student['id']}")).json() == student


async def test_patch_of_a_missing_student_is_404(client: Client) -> None:
    assert_problem(await client.patch("/students/123456789", json={"name": "X"}), 404)


async def test_delete_answers_204_then_the_student_is_gone(client: Client) -> None:
    student = await new_student(client)
    response = await client.delete(f"/students/{student['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(f"/students/{student['id']}"), 404)
    assert_problem(await client.delete(f"/students/{student['id']}"), 404)


async def test_listing_walks_every_student_once_in_id_order(client: Client) -> None:
    created = [await new_student(client, name=unique("S")) for _ in range(7)]
    walk = await walk_pages(client, "/students", limit=3)
    assert walk.items == created
    assert walk.pages == 3  # 3 + 3 + 1: no empty page at the end


async def test_a_full_last_page_answers_next_after_null(client: Client) -> None:
    for _ in range(4):
        await new_student(client)
    first = (await client.get("/students", params={"limit": 2})).json()
    second = (await client.get("/students", params={"limit": 2, "after": first["next_after"]})).json()
    assert len(second["items"]) == 2
    assert second["next_after"] is None


async def test_the_list_defaults_to_50_per_page(client: Client) -> None:
    await asyncio.gather(*(new_student(client) for _ in range(51)))
    page = (await client.get("/students")).json()
    assert len(page["items"]) == 50
    assert page["next_after"] == page["items"][-1]["id"]


async def test_an_empty_list_answers_no_items(client: Client) -> None:
    assert (await client.get("/students")).json() == {"items": [], "next_after": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": 0}, "after"),
        ({"after": -5}, "after"),
        ({"after": 2**63}, "after"),
        ({"after": "x"}, "after"),
    ],
)
async def test_list_parameters_out_of_bounds_are_422(
    client: Client, params: dict[str, int | str], field: str
) -> None:
    assert_problem(await client.get("/students", params=params), 422, field=field)
