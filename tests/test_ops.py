"""Probes, the error shape of framework errors, and start-up failures."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from helpers import PROBLEM_JSON, ROOT, assert_problem, in_process
from litestar import Litestar, get

from service.db import QueryError, QueryGroup, check_queries, sql_file
from service.drain import Drain
from service.errors import EXCEPTION_HANDLERS

Client = httpx.AsyncClient


async def test_health_answers_ok(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_answers_200_when_the_database_answers(client: Client) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_an_unknown_route_is_a_404_problem(client: Client) -> None:
    assert_problem(await client.get("/nothing/here"), 404)


async def test_a_wrong_method_is_a_405_problem_that_keeps_allow(client: Client) -> None:
    response = await client.put("/students")
    assert_problem(response, 405)
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["allow"].split(",")}


async def test_a_non_json_content_type_is_refused(client: Client) -> None:
    response = await client.post("/students", content=b"name=A", headers={"content-type": "text/plain"})
    assert response.status_code in (415, 422)
    assert response.headers["content-type"].startswith(PROBLEM_JSON)


async def test_an_unexpected_failure_is_a_500_problem_without_internals() -> None:
    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret.py line 3")

    app = Litestar([boom], exception_handlers=EXCEPTION_HANDLERS)
    async with in_process(app) as client:
        response = await client.get("/boom")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert body["title"] == "Internal Server Error"


async def test_a_broken_sql_file_is_named_when_statements_are_checked(
    tmp_path: Path, migrated_url: str
) -> None:
    (tmp_path / "things").mkdir()
    (tmp_path / "things" / "fine.sql").write_text("SELECT 1")
    (tmp_path / "things" / "broken.sql").write_text("SELEC id FROM nowhere")

    class Things(QueryGroup, folder="things", root=tmp_path):
        fine = sql_file()
        broken = sql_file()

    conn = await asyncpg.connect(migrated_url)
    try:
        with pytest.raises(QueryError, match=r"sql/things/broken\.sql"):
            await check_queries(conn, [Things])
    finally:
        await conn.close()


async def test_a_sql_file_that_no_group_declares_is_refused(tmp_path: Path, migrated_url: str) -> None:
    (tmp_path / "things").mkdir()
    (tmp_path / "things" / "fine.sql").write_text("SELECT 1")
    (tmp_path / "things" / "forgotten.sql").write_text("SELECT 2")

    class Things(QueryGroup, folder="things", root=tmp_path):
        fine = sql_file()

    conn = await asyncpg.connect(migrated_url)
    try:
        with pytest.raises(QueryError, match=r"sql/things/forgotten\.sql is declared by no QueryGroup"):
            await check_queries(conn, [Things])
    finally:
        await conn.close()


def test_a_query_without_its_file_fails_at_import(tmp_path: Path) -> None:
    (tmp_path / "things").mkdir()
    with pytest.raises(QueryError, match=r"Things\.missing has no SQL file"):

        class Things(QueryGroup, folder="things", root=tmp_path):
            missing = sql_file()


async def test_every_shipped_sql_file_prepares(db: asyncpg.Connection) -> None:
    await check_queries(db)


def run_service(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,  # the exit status is what the tests check
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://root@localhost/db", "postgresql://"),
        ("postgresql://u@localhost:notaport/db", "malformed"),
    ],
)
def test_a_bad_database_url_ends_in_one_clear_line_and_a_non_zero_exit(url: str, says: str) -> None:
    result = run_service({"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "DB_CONNECT_TIMEOUT_S": "2"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]


async def test_sigterm_with_a_drain_delay_marks_the_process_draining_then_passes_the_signal_on() -> None:
    """The order a rolling restart needs: /ready fails at once, the server stops only later."""
    passed_on: list[float] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: passed_on.append(time.monotonic()))
    try:
        drain = Drain(0.3)
        with drain.on_sigterm():
            sent = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.05)
            assert drain.draining
            assert passed_on == []
            await asyncio.sleep(0.4)
        assert len(passed_on) == 1
        assert passed_on[0] - sent >= 0.3
    finally:
        signal.signal(signal.SIGTERM, previous)
