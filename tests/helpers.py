"""Small helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import msgspec
from litestar import Litestar

from service.enrollments.schemas import EnrolledCourse
from service.keys import repository as keys
from service.keys.cli import on_database
from service.keys.schemas import ApiKeyCreate, NewApiKey
from service.keys.scopes import ScopeName

PROBLEM_JSON = "application/problem+json"
MAX_ID = 2**63 - 1
BAD_IDS = ["0", "-1", str(2**63), "abc", "1.5"]

ROOT = Path(__file__).resolve().parent.parent  # the repository
SERVICE_COMMAND = (sys.executable, "-m", "service")

_serial = count(1)

# A database URL -> the URL the service's processes use for it (PgBouncer, with TEST_VIA_PGBOUNCER=1).
SERVICE_DATABASE_URLS: dict[str, str] = {}


@contextmanager
def running_service(
    database_url: str,
    *,
    cwd: Path = ROOT,
    command: Sequence[str] = SERVICE_COMMAND,
    output: Path | None = None,
    **env: str,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m service` as deployed, on a free port; answers the process and its base URL.

    With `output`, everything the process writes (stdout and stderr) goes to that file.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    database_url = SERVICE_DATABASE_URLS.get(database_url, database_url)
    environ = {**os.environ, "DATABASE_URL": database_url, "PORT": str(port), "ACCESS_LOG": "false", **env}
    log = output.open("ab") if output is not None else None
    process = subprocess.Popen(
        list(command), cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT if log else None
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if log is not None:
            log.close()


@asynccontextmanager
async def in_process(app: Litestar, *, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and call it in this event loop, sending `key` with every request.

    Litestar's AsyncTestClient sends each request through a blocking portal, which
    serialises "concurrent" requests; httpx's ASGITransport does not.
    """
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # narrower ASGI types
        headers = bearer(key) if key else None
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            yield client


class HeldClient:
    """`in_process` entered and left by a task of its own, so that a fixture may start it in one
    task and end it in another (pytest-asyncio tears fixtures down in another task; the app's
    lifespan holds anyio scopes that must be left by the task that entered them)."""

    def __init__(self, app: Litestar, key: str | None) -> None:
        self.app, self.key = app, key
        self._entered, self._leave = asyncio.Event(), asyncio.Event()
        self._clients: list[httpx.AsyncClient] = []
        self._holder: asyncio.Task[None] | None = None

    async def start(self) -> httpx.AsyncClient:
        self._holder = asyncio.create_task(self._hold())
        await self._entered.wait()
        return self._clients[0]

    async def stop(self) -> None:
        self._leave.set()
        assert self._holder is not None
        await self._holder

    async def _hold(self) -> None:
        async with in_process(self.app, key=self.key) as client:
            self._clients.append(client)
            self._entered.set()
            await self._leave.wait()


async def mint_key(
    database_url: str, *scopes: ScopeName, expires_at: datetime | None = None, name: str = "tests"
) -> NewApiKey:
    """A new API key in that database, as `make api-key` makes one."""
    new = ApiKeyCreate(name=name, scopes=list(scopes), expires_at=expires_at)
    return await on_database(database_url, lambda db: keys.create_key(db, new=new))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def unique(prefix: str) -> str:
    return f"{prefix}{next(_serial)}"


async def new_student(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Ada Lovelace", "email": f"{unique('ada')}@example.org", **fields}
    response = await client.post("/students", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def new_course(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"code": unique("CS"), "title": "Analytical Engines", **fields}
    response = await client.post("/courses", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def assert_problem(response: httpx.Response, status: int, *, field: str | None = None) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status (and names `field`, if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = dict(response.json())
    assert body["status"] == status
    assert body["type"]
    assert body["title"]
    assert body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def course_list(response: httpx.Response) -> list[dict[str, Any]]:
    """A 200 course list, checked against the documented EnrolledCourse shape."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    courses = msgspec.json.decode(response.content, type=list[EnrolledCourse])  # strict: exact types
    assert [c.id for c in courses] == sorted(c.id for c in courses)
    assert all(c.enrolled_at.utcoffset() == timedelta(0) for c in courses)
    return list(response.json())


def ids(courses: list[dict[str, Any]]) -> list[int]:
    return [c["id"] for c in courses]


@dataclass
class PageWalk:
    """A keyset walk through one list, checking API.md's paging promises on every page.

    Any client can drive it: `while walk.more: walk.take(client.get(path, params=walk.params))`.
    """

    limit: int
    items: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    after: int | None = None
    more: bool = True

    @property
    def params(self) -> dict[str, int]:
        """The query of the next page: `limit`, and `after` from the second page on."""
        return {"limit": self.limit} | ({} if self.after is None else {"after": self.after})

    def take(self, response: httpx.Response) -> None:
        """Check one page and add its items: ordered by id, full unless it is the last."""
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        page = response.json()
        assert set(page) == {"items", "next_after"}, page
        items: list[dict[str, Any]] = page["items"]
        page_ids = [item["id"] for item in items]
        assert page_ids == sorted(page_ids), "a page is ordered by id"
        if self.items and items:
            assert items[0]["id"] > self.items[-1]["id"], "a page starts after the previous one"
        self.items += items
        self.pages += 1
        if page["next_after"] is None:
            assert items or self.pages == 1, "a client never has to fetch an empty page"
            self.more = False
        else:
            assert len(items) == self.limit, "only the last page may be short"
            assert page["next_after"] == items[-1]["id"]
            self.after = page["next_after"]


async def walk_pages(client: httpx.AsyncClient, path: str, *, limit: int) -> PageWalk:
    """Follow `next_after` from the first page to the last; answers the walk (items, pages)."""
    walk = PageWalk(limit)
    while walk.more:
        walk.take(await client.get(path, params=walk.params))
    return walk
