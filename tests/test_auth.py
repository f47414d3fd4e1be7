"""Authentication and scopes, as API.md's "Authentication and scopes" describes them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    ROOT,
    assert_problem,
    bearer,
    in_process,
    mint_key,
    new_student,
    running_service,
    walk_pages,
)
from litestar import Litestar, Router, get
from litestar.middleware import DefineMiddleware
from litestar.routes import HTTPRoute

from service.app import create_app
from service.auth import Authenticate, KeyCache, check_routes_declare_scopes
from service.keys.cli import development_key
from service.keys.tokens import mint_key as new_random_key
from service.observability import AuthMetrics
from service.settings import Settings

Client = httpx.AsyncClient

# The only routes anyone may call without a key (API.md).
OPEN_PATHS = {"/health", "/ready", "/metrics"}
KEY_SHAPE = re.compile(r"enr_[A-Za-z0-9]{32,}")
SOME_BODY = {
    "name": "A",
    "email": "a@b.io",
    "code": "C1",
    "title": "T",
    "course_ids": [1],
    "scopes": ["read"],
}


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path == "/schema" or path.startswith("/schema/")


def every_protected_operation(app: Litestar) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves, from its own route table."""
    operations: list[tuple[str, str]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or is_open(route.path_format):
            continue
        path = re.sub(r"\{[^}]+\}", "1", route.path_format)
        operations += [(method, path) for method in route.route_handler_map if method != "OPTIONS"]
    return operations


def assert_unauthorized(response: httpx.Response, *, key_sent: bool) -> None:
    problem = assert_problem(response, 401)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="enrollment"')
    assert ('error="invalid_token"' in challenge) is key_sent
    assert problem["type"].endswith("unauthorized")


# Every route needs a key


@pytest.fixture
async def anonymous(app: Litestar, client: Client) -> AsyncIterator[Client]:
    """A client of the running app that sends no key."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # narrower ASGI types
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anonymous:
        yield anonymous


async def test_every_route_but_the_open_ones_answers_401_without_a_key(
    app: Litestar, anonymous: Client, db: asyncpg.Connection
) -> None:
    operations = every_protected_operation(app)
    assert len(operations) >= 19  # the resource routes and /api-keys
    for method, path in operations:
        response = await anonymous.request(method, path, json=SOME_BODY)
        assert_unauthorized(response, key_sent=False)
        response = await anonymous.request(method, path, json=SOME_BODY, headers={"Authorization": ""})
        assert_unauthorized(response, key_sent=True)
    assert await db.fetchval("SELECT count(*) FROM students") == 0


async def test_the_open_routes_are_exactly_the_probes_metrics_and_docs(
    app: Litestar, anonymous: Client
) -> None:
    open_routes = {route.path_format for route in app.routes if is_open(route.path_format)}
    assert {"/health", "/ready", "/metrics", "/schema", "/schema/openapi.json"} <= open_routes
    for path in ("/health", "/ready", "/metrics", "/schema/openapi.json"):
        assert (await anonymous.get(path)).status_code == 200, path


def test_an_app_with_a_route_that_declares_no_scope_is_refused() -> None:
    @get("/forgotten")
    async def forgotten() -> str:
        return "personal data"

    @get("/declared", required_scope=None)
    async def declared() -> str:
        return "fine"

    cache = KeyCache(AuthMetrics(), refresh_s=1)
    guarded = Router("/", route_handlers=[forgotten], middleware=[DefineMiddleware(Authenticate, keys=cache)])
    with pytest.raises(RuntimeError, match="GET /forgotten declares no required_scope"):
        check_routes_declare_scopes(Litestar([guarded]))
    check_routes_declare_scopes(Litestar([declared]))  # not behind the check: not its business


# 401 and 403


async def test_missing_malformed_unknown_revoked_and_expired_keys_get_the_same_401(
    client: Client, migrated_url: str
) -> None:
    revoked = await mint_key(migrated_url, "read")
    await client.delete(f"/api-keys/{revoked.id}")
    expired = await mint_key(migrated_url, "read")
    conn = await asyncpg.connect(migrated_url)
    try:
        await conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE id = $1", expired.id
        )
    finally:
        await conn.close()
    bodies = set()
    for authorization in (
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-key",
        f"Bearer {new_random_key()}",
        f"Bearer {revoked.key}",
        f"Bearer {expired.key}",
        f"Token {revoked.key}",
    ):
        response = await client.get("/students", headers={"Authorization": authorization})
        assert_unauthorized(response, key_sent=True)
        bodies.add(response.json()["detail"])
    assert len(bodies) == 1, "the answer does not say what was wrong with the key"


async def test_the_scheme_is_matched_case_insensitively(client: Client, migrated_url: str) -> None:
    key = (await mint_key(migrated_url, "read")).key
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        response = await client.get("/students", headers={"Authorization": f"{scheme} {key}"})
        assert response.status_code == 200, scheme


async def test_a_read_key_gets_403_for_every_write_whatever_the_body(
    app: Litestar, client: Client, migrated_url: str, db: asyncpg.Connection
) -> None:
    student = await new_student(client)
    read = bearer((await mint_key(migrated_url, "read")).key)
    assert (await client.get(f"/students/{student['id']}", headers=read)).status_code == 200
    writes = [(m, p) for m, p in every_protected_operation(app) if m != "GET" and "api-keys" not in p]
    assert len(writes) == 10
    for method, path in writes:
        for body in (b"{not json", b'{"name": 7}'):
            response = await client.request(
                method, path, content=body, headers={**read, "Content-Type": "application/json"}
            )
            problem = assert_problem(response, 403)
            assert problem["required_scope"] == "write"
            challenge = response.headers["www-authenticate"]
            assert 'error="insufficient_scope"' in challenge
            assert 'scope="write"' in challenge
    assert await db.fetchval("SELECT count(*) FROM students") == 1


async def test_scopes_nest_read_then_write_then_admin(client: Client, migrated_url: str) -> None:
    read, write, admin = [bearer((await mint_key(migrated_url, s)).key) for s in ("read", "write", "admin")]
    created = await client.post("/students", json={"name": "W", "email": "w@b.io"}, headers=write)
    assert created.status_code == 201
    assert (await client.get("/students", headers=write)).status_code == 200  # write includes read
    assert (await client.get("/api-keys", headers=admin)).status_code == 200
    assert (await client.delete(f"/students/{created.json()['id']}", headers=admin)).status_code == 204
    for key in (read, write):
        problem = assert_problem(await client.get("/api-keys", headers=key), 403)
        assert problem["required_scope"] == "admin"


# /api-keys


async def test_creating_a_key_shows_it_once_and_it_works_at_once(client: Client) -> None:
    response = await client.post("/api-keys", json={"name": "billing", "scopes": ["write", "read", "write"]})
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "name", "scopes", "prefix", "created_at", "expires_at", "revoked_at", "key"}
    assert KEY_SHAPE.fullmatch(created["key"])
    assert created["prefix"] == created["key"][:12]
    assert created["scopes"] == ["read", "write"]  # repeats count once
    assert (created["expires_at"], created["revoked_at"]) == (None, None)
    assert response.headers["location"] == f"/api-keys/{created['id']}"
    shown = (await client.get(response.headers["location"])).json()
    assert shown == {k: v for k, v in created.items() if k != "key"}
    new_key = bearer(created["key"])
    assert (
        await client.post("/students", json={"name": "B", "email": "b@b.io"}, headers=new_key)
    ).status_code == 201


async def test_the_list_of_keys_pages_and_never_holds_a_key(client: Client, migrated_url: str) -> None:
    minted = [await mint_key(migrated_url, "read") for _ in range(3)]
    walk = await walk_pages(client, "/api-keys", limit=2)
    assert {k.id for k in minted} <= {item["id"] for item in walk.items}
    assert all("key" not in item for item in walk.items)
    text = str(walk.items)
    assert not any(k.key in text for k in minted)


async def test_revoking_answers_204_refuses_the_key_at_once_and_again_changes_nothing(
    client: Client, migrated_url: str
) -> None:
    key = await mint_key(migrated_url, "read")
    assert (await client.get("/students", headers=bearer(key.key))).status_code == 200  # cached now
    assert (await client.delete(f"/api-keys/{key.id}")).status_code == 204
    assert_unauthorized(await client.get("/students", headers=bearer(key.key)), key_sent=True)
    revoked_at = (await client.get(f"/api-keys/{key.id}")).json()["revoked_at"]
    assert revoked_at is not None
    assert (await client.delete(f"/api-keys/{key.id}")).status_code == 204
    assert (await client.get(f"/api-keys/{key.id}")).json()["revoked_at"] == revoked_at
    assert_problem(await client.delete("/api-keys/999999999"), 404)
    assert_problem(await client.get("/api-keys/999999999"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["read"]}, "name"),
        ({"name": " ", "scopes": ["read"]}, "name"),
        ({"name": "x" * 201, "scopes": ["read"]}, "name"),
        ({"name": "k"}, "scopes"),
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": ["root"]}, "scopes[0]"),
        ({"name": "k", "scopes": "read"}, "scopes"),
        ({"name": "k", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": 4102444800}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": "soon"}, "expires_at"),
    ],
)
async def test_a_bad_key_request_is_422_naming_the_field_and_creates_nothing(
    client: Client, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    before = await db.fetchval("SELECT count(*) FROM api_keys")
    assert_problem(await client.post("/api-keys", json=body), 422, field=field)
    assert await db.fetchval("SELECT count(*) FROM api_keys") == before


async def test_a_key_that_expires_is_refused_from_its_expiry_on(client: Client, migrated_url: str) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=1.5)
    key = bearer((await mint_key(migrated_url, "read", expires_at=expires_at)).key)
    assert (await client.get("/students", headers=key)).status_code == 200
    await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 0.05)
    assert_unauthorized(await client.get("/students", headers=key), key_sent=True)


# The cache


async def lookups(client: Client) -> float:
    metrics = (await client.get("/metrics")).text
    found = re.search(r"^enrollment_auth_key_lookups_total (\S+)$", metrics, re.MULTILINE)
    assert found, metrics
    return float(found.group(1))


async def test_a_new_key_is_looked_up_once_however_many_requests_bring_it_at_once(
    client: Client, migrated_url: str
) -> None:
    key = bearer((await mint_key(migrated_url, "read")).key)
    before = await lookups(client)
    responses = await asyncio.gather(*(client.get("/students", headers=key) for _ in range(100)))
    assert [r.status_code for r in responses] == [200] * 100
    assert await lookups(client) == before + 1
    await asyncio.gather(*(client.get("/students", headers=key) for _ in range(20)))
    assert await lookups(client) == before + 1, "a cached key costs no lookup"


async def test_an_unknown_key_sent_again_is_refused_from_memory(client: Client) -> None:
    unknown = bearer(new_random_key())
    before = await lookups(client)
    for _ in range(5):
        assert_unauthorized(await client.get("/students", headers=unknown), key_sent=True)
    assert await lookups(client) == before + 1


async def test_failed_authentications_are_counted_by_reason(client: Client, migrated_url: str) -> None:
    read = bearer((await mint_key(migrated_url, "read")).key)
    await client.get("/students", headers={"Authorization": "Basic x"})
    await client.get("/students", headers={"Authorization": f"Bearer {new_random_key()}"})
    await client.post("/students", json={}, headers=read)
    metrics = (await client.get("/metrics")).text
    for reason in ("malformed", "unknown", "insufficient_scope"):
        assert re.search(
            rf'^enrollment_auth_failures_total\{{reason="{reason}"\}} [1-9]', metrics, re.MULTILINE
        )


# Logs, bodies and the access log


async def test_the_access_log_names_the_caller_by_key_id(
    client: Client, migrated_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    key = await mint_key(migrated_url, "read")
    capfd.readouterr()
    await client.get("/students", headers={**bearer(key.key), "X-Request-ID": "who-am-i"})
    await client.get("/students", headers={"X-Request-ID": "nobody", "Authorization": "Bearer x"})
    await asyncio.sleep(0.2)
    out = capfd.readouterr().out
    lines = {line["request_id"]: line for line in map(_json, out.splitlines()) if line}
    assert lines["who-am-i"]["key_id"] == key.id
    assert lines["nobody"]["key_id"] is None
    assert key.key not in out


def _json(line: str) -> dict[str, Any] | None:
    import json  # noqa: PLC0415

    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and "request_id" in parsed else None


# AUTH=off and the development key


async def test_auth_off_lets_every_caller_do_everything_and_warns_at_start(
    migrated_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    app = create_app(Settings(database_url=migrated_url, auth=False))
    async with in_process(app) as anonymous:
        assert (await anonymous.get("/api-keys")).status_code == 200
        assert (await anonymous.get("/students")).status_code == 200
    warned = [line for line in capfd.readouterr().err.splitlines() if "AUTH=off" in line]
    assert len(warned) == 1
    assert "WARNING" in warned[0]


async def test_the_development_key_is_the_same_across_restarts_and_kept_private(
    empty_database_url: str, tmp_path: Path
) -> None:
    from service import migrate  # noqa: PLC0415

    migrate.apply(empty_database_url)
    key_file = tmp_path / ".data" / "dev-api-key"
    key = await asyncio.to_thread(development_key, empty_database_url, key_file)
    assert KEY_SHAPE.fullmatch(key)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert await asyncio.to_thread(development_key, empty_database_url, key_file) == key
    app = create_app(Settings(database_url=empty_database_url))
    async with in_process(app, key=key) as client:
        (listed,) = (await client.get("/api-keys")).json()["items"]
        assert (listed["name"], listed["scopes"]) == ("development", ["admin"])
        assert (await client.delete(f"/api-keys/{listed['id']}")).status_code == 204
    renewed = await asyncio.to_thread(development_key, empty_database_url, key_file)
    assert renewed != key, "a revoked development key is replaced, not revived"
    assert key_file.read_text().strip() == renewed


# Real processes


async def test_a_revocation_reaches_another_process_within_5_s(migrated_url: str, admin_key: str) -> None:
    minted = await mint_key(migrated_url, "read")
    key, key_id = bearer(minted.key), minted.id
    with running_service(migrated_url) as (_, first), running_service(migrated_url) as (_, second):
        async with httpx.AsyncClient(timeout=10) as http:
            for base in (first, second):
                assert (await http.get(f"{base}/students", headers=key)).status_code == 200  # cached by both
            revoked = await http.delete(f"{first}/api-keys/{key_id}", headers=bearer(admin_key))
            assert revoked.status_code == 204
            start = time.monotonic()
            assert_unauthorized(await http.get(f"{first}/students", headers=key), key_sent=True)
            while (await http.get(f"{second}/students", headers=key)).status_code == 200:
                assert time.monotonic() - start < 5, "the other process still accepts the revoked key"
                await asyncio.sleep(0.05)
            for _ in range(20):
                assert_unauthorized(await http.get(f"{second}/students", headers=key), key_sent=True)


async def test_no_key_ever_appears_in_a_log_line_or_an_answer(
    migrated_url: str, admin_key: str, tmp_path: Path
) -> None:
    read = await mint_key(migrated_url, "read")
    revoked = await mint_key(migrated_url, "write")
    unknown, malformed = new_random_key(), "enr_" + "x" * 40 + "!"
    output = tmp_path / "service.log"
    answers: list[httpx.Response] = []
    with running_service(migrated_url, output=output, ACCESS_LOG="true") as (process, base):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            created = await http.post(
                "/api-keys", json={"name": "n", "scopes": ["read"]}, headers=bearer(admin_key)
            )
            assert created.status_code == 201
            new = created.json()["key"]
            answers.append(await http.delete(f"/api-keys/{revoked.id}", headers=bearer(admin_key)))
            for key in (read.key, revoked.key, unknown, malformed, new, admin_key):
                answers.append(await http.get("/students", headers=bearer(key)))
                answers.append(await http.post("/students", content=b"{", headers=bearer(key)))
                answers.append(await http.get("/api-keys?limit=500", headers=bearer(key)))
                answers.append(await http.get(f"/students/{key}", headers=bearer(key)))
        process.send_signal(signal.SIGTERM)  # flushes the access log
        process.wait(timeout=15)
    logged = output.read_text()
    assert '"key_id":' in logged  # the access log was on, and names callers
    assert {a.status_code for a in answers} >= {200, 204, 401, 403, 422}
    for key in (read.key, revoked.key, unknown, malformed, new, admin_key):
        secret = key[12:]  # after the prefix, which lists may show
        assert secret not in logged
        for answer in answers:
            assert secret not in answer.text
            assert secret not in str(answer.headers)


def test_keys_from_the_shell_create_list_and_revoke(migrated_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": migrated_url}

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.keys", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    made = subprocess.run(
        ["make", "-s", "api-key", "NAME=from make", "SCOPES=read write"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert KEY_SHAPE.fullmatch(key)
    key_id = int(re.findall(r"created API key (\d+)", made.stdout)[0])
    listed = keys("list")
    assert listed.returncode == 0
    assert key[:12] in listed.stdout
    assert key[12:] not in listed.stdout
    assert "read,write" in listed.stdout
    assert keys("revoke", str(key_id)).returncode == 0
    assert re.search(rf"^\s*{key_id}\s.*\s20\d\d-", keys("list").stdout, re.MULTILINE), "revoked_at is shown"
    refused = keys("create", "--name", "x", "--scopes", "root")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "scopes" in refused.stderr
    assert keys("revoke", "999999999").returncode == 1
    past = keys("create", "--name", "x", "--scopes", "read", "--expires-at", "2001-01-01T00:00:00Z")
    assert (past.returncode, past.stderr) == (1, "keys: ValueError: --expires-at must be in the future\n")
    later = keys("create", "--name", "x", "--scopes", "read,admin", "--expires-at", "2999-01-01T00:00:00Z")
    assert later.returncode == 0
    assert "scopes: read admin" in later.stdout


def test_a_read_from_before_a_revocation_does_not_bring_the_key_back() -> None:
    """The revoking process forgets the key at once; a refresh that read the key just before
    the revocation committed must not put it back."""
    cache = KeyCache(AuthMetrics(), refresh_s=1)
    digest = hashlib.sha256(new_random_key().encode()).digest()
    stale = {"key_hash": digest, "id": 7, "scopes": ["read"], "expires_at": None, "revoked_at": None}
    cache.forget(digest)
    cache._store([digest], [stale])  # type: ignore[list-item]  # the columns of a row
    assert cache.cached(digest) is None
