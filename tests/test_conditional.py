"""Conditional requests, as API.md "Conditional requests" describes them: strong ETags,
If-None-Match (304) and If-Match (412, and nothing written)."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import httpx
import pytest
from helpers import assert_problem, new_course, new_student

Client = httpx.AsyncClient
STRONG_ETAG = re.compile(r'^"[^"\s]+"$')


def etag(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    tag = response.headers["etag"]
    assert STRONG_ETAG.match(tag), tag
    return tag


async def events_count(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT coalesce(sum(n), 0) FROM events"))


@pytest.fixture
async def student(client: Client) -> dict[str, object]:
    return await new_student(client)


@pytest.mark.parametrize("kind", ["student", "course", "course list"])
async def test_a_get_answers_a_strong_etag_that_stays_the_same_while_nothing_changes(
    client: Client, kind: str
) -> None:
    path = await _path_of(client, kind)
    first, second = await client.get(path), await client.get(path)
    assert etag(first) == etag(second)
    assert first.content == second.content


@pytest.mark.parametrize("kind", ["student", "course", "course list"])
async def test_if_none_match_naming_the_current_etag_answers_304_without_a_body(
    client: Client, kind: str
) -> None:
    path = await _path_of(client, kind)
    tag = etag(await client.get(path))
    for header in (tag, f"W/{tag}", f'"stale", {tag}', "*"):
        response = await client.get(path, headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == tag


async def test_if_none_match_naming_another_etag_answers_the_body(
    client: Client, student: dict[str, object]
) -> None:
    response = await client.get(
        f"/students/{student['id']}", headers={"If-None-Match": '"not-it", W/"nor-this"'}
    )
    assert response.status_code == 200
    assert response.json() == student


async def test_if_none_match_on_a_missing_resource_is_still_a_404(client: Client) -> None:
    assert_problem(await client.get("/students/999999", headers={"If-None-Match": "*"}), 404)


async def test_a_patch_answers_the_new_etag_which_a_get_then_repeats(
    client: Client, student: dict[str, object]
) -> None:
    path = f"/students/{student['id']}"
    before = etag(await client.get(path))
    patched = await client.patch(path, json={"name": "Ada King"})
    assert etag(patched) != before
    assert etag(patched) == etag(await client.get(path))
    course = await new_course(client)
    patched_course = await client.patch(f"/courses/{course['id']}", json={"title": "Difference Engines"})
    assert etag(patched_course) == etag(await client.get(f"/courses/{course['id']}"))


async def test_a_put_answers_the_etag_of_the_new_course_list(
    client: Client, student: dict[str, object]
) -> None:
    courses = [await new_course(client) for _ in range(3)]
    path = f"/students/{student['id']}/courses"
    empty = etag(await client.get(path))
    put = await client.put(path, json={"course_ids": [c["id"] for c in courses]})
    assert etag(put) != empty
    assert etag(put) == etag(await client.get(path))


async def test_a_course_list_changes_its_etag_when_a_course_in_it_is_renamed(
    client: Client, student: dict[str, object]
) -> None:
    course = await new_course(client)
    path = f"/students/{student['id']}/courses"
    await client.post(path, json={"course_ids": [course["id"]]})
    before = etag(await client.get(path))
    assert (await client.patch(f"/courses/{course['id']}", json={"title": "Renamed"})).status_code == 200
    after = await client.get(path)
    assert etag(after) != before
    assert (await client.get(path, headers={"If-None-Match": before})).status_code == 200


@pytest.mark.parametrize("kind", ["student", "course"])
async def test_a_patch_with_a_stale_if_match_is_412_and_changes_nothing(
    client: Client, db: asyncpg.Connection, kind: str
) -> None:
    path = await _path_of(client, kind)
    stale = etag(await client.get(path))
    field = "name" if kind == "student" else "title"
    assert (await client.patch(path, json={field: "First change"})).status_code == 200
    current = await client.get(path)
    events = await events_count(db)

    refused = await client.patch(path, json={field: "Lost update"}, headers={"If-Match": stale})
    assert_problem(refused, 412)
    assert "etag" not in refused.headers
    assert (await client.get(path)).content == current.content
    assert await events_count(db) == events


@pytest.mark.parametrize("kind", ["student", "course"])
async def test_a_patch_with_the_current_etag_or_a_star_writes(client: Client, kind: str) -> None:
    path = await _path_of(client, kind)
    field = "name" if kind == "student" else "title"
    current = etag(await client.get(path))
    first = await client.patch(path, json={field: "Matched"}, headers={"If-Match": f'"other", {current}'})
    assert first.json()[field] == "Matched"
    second = await client.patch(path, json={field: "Starred"}, headers={"If-Match": "*"})
    assert second.json()[field] == "Starred"


async def test_if_match_compares_strongly_so_a_weak_tag_never_matches(
    client: Client, student: dict[str, object]
) -> None:
    path = f"/students/{student['id']}"
    current = etag(await client.get(path))
    assert_problem(await client.patch(path, json={"name": "X"}, headers={"If-Match": f"W/{current}"}), 412)


@pytest.mark.parametrize("kind", ["student", "course"])
async def test_a_delete_with_a_stale_if_match_is_412_and_deletes_nothing(client: Client, kind: str) -> None:
    path = await _path_of(client, kind)
    stale = etag(await client.get(path))
    field = "name" if kind == "student" else "title"
    assert (await client.patch(path, json={field: "Changed"})).status_code == 200
    assert_problem(await client.delete(path, headers={"If-Match": stale}), 412)
    current = etag(await client.get(path))
    assert (await client.delete(path, headers={"If-Match": current})).status_code == 204
    assert_problem(await client.get(path), 404)


async def test_a_put_with_a_stale_if_match_is_412_and_replaces_nothing(
    client: Client, student: dict[str, object]
) -> None:
    first, second = await new_course(client), await new_course(client)
    path = f"/students/{student['id']}/courses"
    stale = etag(await client.get(path))
    await client.post(path, json={"course_ids": [first["id"]]})
    before = await client.get(path)
    assert_problem(
        await client.put(path, json={"course_ids": [second["id"]]}, headers={"If-Match": stale}), 412
    )
    assert (await client.get(path)).content == before.content
    replaced = await client.put(path, json={"course_ids": [second["id"]]}, headers={"If-Match": etag(before)})
    assert [c["id"] for c in replaced.json()] == [second["id"]]


async def test_if_match_on_a_missing_resource_is_a_404(client: Client) -> None:
    """RFC 9110 §13.2.1: preconditions are ignored when the answer without them would be a 4xx."""
    for response in (
        await client.patch("/students/999999", json={"name": "X"}, headers={"If-Match": "*"}),
        await client.delete("/courses/999999", headers={"If-Match": '"x"'}),
        await client.put("/students/999999/courses", json={"course_ids": []}, headers={"If-Match": "*"}),
    ):
        assert_problem(response, 404)


async def test_concurrent_patches_with_the_same_if_match_let_exactly_one_through(
    client: Client, db: asyncpg.Connection, student: dict[str, object]
) -> None:
    """The lost update: each client read the same version and sends its change conditionally.
    A check apart from the write (read, compare, then update) lets several of them through."""
    path = f"/students/{student['id']}"
    for round_ in range(5):
        seen = etag(await client.get(path))
        answers = await asyncio.gather(
            *(
                client.patch(path, json={"name": f"Writer {n} of round {round_}"}, headers={"If-Match": seen})
                for n in range(20)
            )
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] + [412] * 19, statuses
        winner = next(a for a in answers if a.status_code == 200)
        assert (await client.get(path)).json()["name"] == winner.json()["name"]


async def _path_of(client: Client, kind: str) -> str:
    if kind == "course":
        return f"/courses/{(await new_course(client))['id']}"
    student = await new_student(client)
    if kind == "course list":
        course = await new_course(client)
        await client.post(f"/students/{student['id']}/courses", json={"course_ids": [course["id"]]})
        return f"/students/{student['id']}/courses"
    return f"/students/{student['id']}"
