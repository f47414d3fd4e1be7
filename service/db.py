"""The query layer: named SQL files, an asyncpg pool, and rows as msgspec Structs.

Every `sql/<group>/<name>.sql` is read once at import and addressed as
`QUERIES.<group>.<name>`. `check_queries` prepares each statement against the
database at start-up, so a broken file stops the service before the first request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import asyncpg
import msgspec

from service.errors import DATABASE_OUTAGES
from service.settings import Settings

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

StructT = TypeVar("StructT", bound=msgspec.Struct)

log = logging.getLogger("service.db")


class Query(NamedTuple):
    name: str
    sql: str


class QueryGroup:
    """The statements of one `sql/` folder, as attributes."""

    def __init__(self, queries: Mapping[str, Query]) -> None:
        self._queries = dict(queries)

    def __getattr__(self, name: str) -> Query:
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"no SQL file for query {name!r}") from None

    def __iter__(self) -> Any:
        return iter(self._queries.values())


class Queries:
    """Every statement under `sql/`, grouped by folder: `queries.students.get`."""

    def __init__(self, root: Path) -> None:
        groups: dict[str, dict[str, Query]] = {}
        for path in sorted(root.glob("*/*.sql")):
            group, name = path.parent.name, path.stem
            groups.setdefault(group, {})[name] = Query(f"{group}.{name}", path.read_text())
        self._groups = {group: QueryGroup(queries) for group, queries in groups.items()}

    def __getattr__(self, group: str) -> QueryGroup:
        try:
            return self._groups[group]
        except KeyError:
            raise AttributeError(f"no SQL folder {group!r}") from None

    def __iter__(self) -> Any:
        for group in self._groups.values():
            yield from group


QUERIES = Queries(SQL_DIR)


class QueryError(RuntimeError):
    """A statement in `sql/` does not prepare against the database."""


async def check_queries(conn: asyncpg.Connection, queries: Queries = QUERIES) -> None:
    """Prepare every statement once; raise QueryError naming the first file that fails."""
    for query in queries:
        try:
            await conn.prepare(query.sql)
        except asyncpg.PostgresError as exc:
            raise QueryError(f"sql/{query.name.replace('.', '/')}.sql does not prepare: {exc}") from None


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook replacing asyncpg's reset query.

    Our statements leave no session state (no SET, LISTEN or advisory locks; asyncpg
    still rolls back any open transaction), so the default reset would only add a
    round trip per request (measured: about a quarter of GET throughput).
    """


def planner_settings(settings: Settings) -> dict[str, str]:
    """The session settings that shape plans (bench/bench.py gives its EXPLAIN and pgbench the same)."""
    return {"random_page_cost": str(settings.random_page_cost)}


async def _create_pool(settings: Settings, min_size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=min_size,
        max_size=settings.pool_max_size,
        timeout=settings.connect_timeout_s,
        # The client gives up a little after the server would have cancelled.
        command_timeout=settings.statement_timeout_ms / 1000 + 1,
        statement_cache_size=settings.statement_cache_size,
        reset=_keep_session,
        server_settings={
            "timezone": "UTC",
            "statement_timeout": str(settings.statement_timeout_ms),
            "application_name": "enrollment-service",
            **planner_settings(settings),
        },
    )


class Database:
    """An asyncpg pool whose every wait is bounded by the settings."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.waiting = 0  # requests waiting for a connection, for /metrics
        self._lent = 0  # connections acquired (or being acquired) and not yet released
        self._max_size = settings.pool_max_size
        self._acquire_timeout = settings.pool_acquire_timeout_s

    @classmethod
    async def connect(cls, settings: Settings) -> Database:
        """Open the pool with its minimum of connections, or empty while PostgreSQL is down.

        An empty pool connects on demand, so the service starts without its database
        (/ready says 503) and recovers by itself when the database comes back.
        """
        try:
            return cls(await _create_pool(settings, settings.pool_min_size), settings)
        except DATABASE_OUTAGES as exc:
            log.warning("database unreachable at start-up (%s); answering 503 until it is back", exc)
            return cls(await _create_pool(settings, 0), settings)

    async def close(self, grace_s: float = 10.0) -> None:
        """Close the pool, terminating connections still busy after `grace_s` seconds."""
        try:
            await asyncio.wait_for(self.pool.close(), grace_s)
        except TimeoutError:
            self.pool.terminate()

    async def acquire(self) -> asyncpg.Connection:
        """A pooled connection, after waiting at most the acquire timeout for one.

        While fewer than the pool's maximum are claimed, a slot is free and acquiring
        cannot wait (opening a connection is bounded by the connect timeout), so skip
        the timeout: asyncpg wraps a timed acquire in asyncio.wait_for, a measurable
        cost per request. A slot is claimed before the first await, so requests that
        arrive together cannot all take the untimed path. Release with `release`.
        """
        if self._lent < self._max_size:
            self._lent += 1
            try:
                return await self.pool.acquire()
            except BaseException:
                self._lent -= 1
                raise
        self.waiting += 1
        try:
            conn = await self.pool.acquire(timeout=self._acquire_timeout)
        finally:
            self.waiting -= 1
        self._lent += 1
        return conn

    async def release(self, conn: asyncpg.Connection) -> None:
        self._lent -= 1
        await self.pool.release(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for several statements (a transaction, say)."""
        conn = await self.acquire()
        try:
            yield conn
        finally:
            await self.release(conn)

    # The one-statement helpers below acquire and release by hand: a context manager
    # per request is measurable on the hot path.

    async def ping(self) -> None:
        """One trivial round trip; raises when the database does not answer."""
        await self._run("execute", "SELECT 1")

    async def fetch_all(self, query: Query, *args: Any, into: type[StructT]) -> list[StructT]:
        """All rows of `query`, each as an `into` Struct."""
        return [into(**row) for row in await self._run("fetch", query.sql, *args)]

    async def fetch_one(self, query: Query, *args: Any, into: type[StructT]) -> StructT | None:
        """The first row of `query` as an `into` Struct, or None."""
        row = await self._run("fetchrow", query.sql, *args)
        return None if row is None else into(**row)

    async def fetch_rows(self, query: Query, *args: Any) -> list[asyncpg.Record]:
        """All rows of `query` as they come."""
        return list(await self._run("fetch", query.sql, *args))

    async def fetch_row(self, query: Query, *args: Any) -> asyncpg.Record | None:
        """The first row of `query` as it comes (for statements that answer several things)."""
        return await self._run("fetchrow", query.sql, *args)

    async def fetch_value(self, query: Query, *args: Any) -> Any:
        """The first column of the first row of `query`, or None."""
        return await self._run("fetchval", query.sql, *args)

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        conn = await self.acquire()
        try:
            return await getattr(conn, method)(sql, *args)
        finally:
            await self.release(conn)
