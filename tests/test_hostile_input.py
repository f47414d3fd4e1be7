"""Hostile input against every endpoint of API.md.

Each hostile request must get a 4xx problem+json answer (never a 5xx) and change nothing:
the seeded rows and the row counts of students, courses and student_courses stay as they were.
Odd values that API.md allows (SQL metacharacters in a name, emoji, RTL overrides...) must
be stored and answered exactly as sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import assert_problem
from hostile_corpus import (
    CID,
    HOSTILE,
    HOSTILE_REQUEST_IDS,
    MISSING_ID,
    NEW_ROWS,
    OTHER,
    SID,
    Hostile,
    raw_json,
    valid_text_cases,
)

Client = httpx.AsyncClient

SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


@dataclass(frozen=True)
class Seed:
    student_id: int
    course_id: int  # the student is enrolled in it
    other_course_id: int  # nobody is enrolled in it
    rows: dict[str, list[tuple[Any, ...]]]  # every row of the three tables, as seeded

    def fill(self, text: str) -> str:
        return (
            text.replace(SID, str(self.student_id))
            .replace(CID, str(self.course_id))
            .replace(OTHER, str(self.other_course_id))
        )


@pytest.fixture
def api(session_client: Client) -> Client:
    """The app client without `client`'s TRUNCATE per test: `seed` re-makes the rows only when needed."""
    return session_client


@pytest.fixture(scope="module")
def seeded() -> dict[str, Seed]:
    """The last seed made in this module: most tests leave it as it was, so it is reused."""
    return {}


@pytest.fixture
async def seed(db: asyncpg.Connection, seeded: dict[str, Seed]) -> Seed:
    """One student enrolled in one course, and a course nobody takes; re-made only when changed.

    Emptying and seeding the tables for each of ~900 cases would triple the run time.
    """
    if "seed" in seeded and await snapshot(db) == seeded["seed"].rows:
        return seeded["seed"]
    await db.execute("TRUNCATE students, courses CASCADE")
    row = await db.fetchrow(
        """
        WITH s AS (INSERT INTO students (name, email) VALUES ('Ada Lovelace', 'ada@example.org')
                   RETURNING id),
             c AS (INSERT INTO courses (code, title) VALUES ('CS101', 'Engines') RETURNING id),
             o AS (INSERT INTO courses (code, title) VALUES ('CS102', 'Looms') RETURNING id),
             e AS (INSERT INTO student_courses (student_id, course_id) SELECT s.id, c.id FROM s, c)
        SELECT s.id AS student_id, c.id AS course_id, o.id AS other_course_id FROM s, c, o
        """
    )
    assert row is not None
    seeded["seed"] = Seed(**dict(row), rows=await snapshot(db))
    return seeded["seed"]


async def snapshot(db: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the three data tables, in a stable order."""
    return {
        "students": [tuple(r) for r in await db.fetch("SELECT * FROM students ORDER BY id")],
        "courses": [tuple(r) for r in await db.fetch("SELECT * FROM courses ORDER BY id")],
        "student_courses": [
            tuple(r) for r in await db.fetch("SELECT * FROM student_courses ORDER BY student_id, course_id")
        ],
    }


async def stored_row(db: asyncpg.Connection, table: str, row_id: int) -> dict[str, Any]:
    row = await db.fetchrow(f"SELECT * FROM {table} WHERE id = $1", row_id)
    assert row is not None, (table, row_id)
    return dict(row)


def except_row(
    rows: dict[str, list[tuple[Any, ...]]], table: str, row_id: int
) -> dict[str, list[tuple[Any, ...]]]:
    """A snapshot without one row (its id is the first column), to check that nothing else changed."""
    return {
        name: [r for r in table_rows if (name, r[0]) != (table, row_id)] for name, table_rows in rows.items()
    }


async def send(client: Client, case: Hostile, seed: Seed) -> httpx.Response:
    headers = {} if case.content_type is None else {"content-type": case.content_type}
    body = None if case.body is None else seed.fill(case.body.decode("latin-1")).encode("latin-1")
    return await client.request(case.method, seed.fill(case.path), content=body, headers=headers)


@pytest.mark.parametrize("case", HOSTILE)
async def test_hostile_input_gets_a_4xx_problem_and_changes_nothing(
    api: Client, db: asyncpg.Connection, seed: Seed, case: Hostile
) -> None:
    """A 4xx problem+json (the status API.md names), and every row exactly as it was."""
    before = seed.rows
    response = await send(api, case, seed)
    assert response.status_code in case.expect, (response.status_code, response.text[:300])
    assert_problem(response, response.status_code)
    if response.status_code == 405:
        assert response.headers.get("allow"), "a 405 names the methods allowed"
    assert await snapshot(db) == before


@pytest.mark.parametrize("request_id", HOSTILE_REQUEST_IDS.values(), ids=list(HOSTILE_REQUEST_IDS))
@pytest.mark.parametrize("path", [f"/students/{SID}", f"/students/{MISSING_ID}"], ids=["found", "missing"])
async def test_a_request_id_that_could_inject_is_neither_echoed_nor_obeyed(
    api: Client, db: asyncpg.Connection, seed: Seed, request_id: str, path: str
) -> None:
    """The answer carries a fresh safe id instead, and no header the caller smuggled in."""
    before = seed.rows
    response = await api.get(seed.fill(path), headers={"X-Request-ID": request_id})
    if path.endswith(MISSING_ID):
        assert_problem(response, 404)
    else:
        assert response.status_code == 200, response.text
    answered = response.headers["x-request-id"]
    assert answered != request_id
    assert SAFE_REQUEST_ID.fullmatch(answered)
    assert "set-cookie" not in response.headers
    assert "x-injected" not in response.headers
    assert await snapshot(db) == before


async def test_a_content_type_with_an_injected_header_is_refused(
    api: Client, db: asyncpg.Connection, seed: Seed
) -> None:
    """`application/json\\r\\nX-Injected: 1` is not a JSON content type: 415 or 422, nothing written."""
    case = Hostile(
        "POST",
        "/students",
        raw_json({"name": "Eve", "email": "eve@example.org"}),
        content_type="application/json\r\nX-Injected: 1",
        expect=(415, 422),
    )
    before = seed.rows
    response = await send(api, case, seed)
    assert response.status_code in case.expect, response.text
    assert_problem(response, response.status_code)
    assert "x-injected" not in response.headers
    assert await snapshot(db) == before


@pytest.mark.parametrize(("resource", "field", "value"), valid_text_cases())
async def test_odd_but_valid_text_is_created_and_round_trips_exactly(
    api: Client, db: asyncpg.Connection, seed: Seed, resource: str, field: str, value: str
) -> None:
    """201, and the answer, a GET and the stored row all hold exactly the value sent."""
    before = seed.rows
    response = await api.post(f"/{resource}", json={**NEW_ROWS[resource], field: value})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created[field] == value
    assert (await api.get(f"/{resource}/{created['id']}")).json()[field] == value
    assert await db.fetchval(f"SELECT {field} FROM {resource} WHERE id = $1", created["id"]) == value
    after = await snapshot(db)
    assert after[resource][: len(before[resource])] == before[resource], "the seeded rows are unchanged"
    assert len(after[resource]) == len(before[resource]) + 1


@pytest.mark.parametrize(("resource", "field", "value"), valid_text_cases())
async def test_odd_but_valid_text_is_patched_and_round_trips_exactly(
    api: Client, db: asyncpg.Connection, seed: Seed, resource: str, field: str, value: str
) -> None:
    """200, and only that field of that row changes, to exactly the value sent."""
    row_id = seed.student_id if resource == "students" else seed.course_id
    before = seed.rows
    answered_before = (await api.get(f"/{resource}/{row_id}")).json()
    stored_before = await stored_row(db, resource, row_id)
    response = await api.patch(f"/{resource}/{row_id}", json={field: value})
    assert response.status_code == 200, response.text
    assert response.json() == {**answered_before, field: value}
    assert (await api.get(f"/{resource}/{row_id}")).json() == {**answered_before, field: value}
    assert await stored_row(db, resource, row_id) == {**stored_before, field: value}
    assert except_row(await snapshot(db), resource, row_id) == except_row(before, resource, row_id)


async def test_ids_and_timestamps_in_a_create_body_are_ignored(
    api: Client, db: asyncpg.Connection, seed: Seed
) -> None:
    """Unknown fields are ignored: a caller cannot pick an id (or overwrite the seeded row)."""
    before = seed.rows
    body = {"id": seed.student_id, "created_at": "1970-01-01T00:00:00Z", "name": "Eve", "email": "eve@x.org"}
    response = await api.post("/students", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["id"] != seed.student_id
    assert not response.json()["created_at"].startswith("1970")
    assert (await snapshot(db))["students"][0] == before["students"][0]


async def test_a_patch_of_only_unknown_fields_changes_nothing(
    api: Client, db: asyncpg.Connection, seed: Seed
) -> None:
    """`{"id": ..., "created_at": ...}` is an empty change: 200 and every row as it was."""
    before = seed.rows
    body = {"id": seed.student_id + 1000, "created_at": "1970-01-01T00:00:00Z"}
    response = await api.patch(f"/students/{seed.student_id}", json=body)
    assert response.status_code == 200, response.text
    assert await snapshot(db) == before
