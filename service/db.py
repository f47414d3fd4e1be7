"""The query layer: named SQL files, an asyncpg pool, and rows as msgspec Structs.

Each resource declares its statements in its repository as a `QueryGroup`:

    class StudentQueries(QueryGroup, folder="students"):
        get = sql_file()        # sql/students/get.sql, read at import

A misspelled name is an attribute error under mypy, and a missing file fails at
import. `check_queries` prepares every statement against the database at start-up
(and refuses a `.sql` file that no group declares), so a broken file stops the
service before the first request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeAlias, TypeVar

import asyncpg
import msgspec

from service.settings import Settings

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

StructT = TypeVar("StructT", bound=msgspec.Struct)
if TYPE_CHECKING:
    # What the pool lends: a proxy with the methods of asyncpg.Connection (subscriptable in the stubs only).
    PooledConnection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

log = logging.getLogger("service.db")

# Failures that mean "the database is away or overloaded", not "the request was wrong".
DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
    # asyncpg's "cannot switch to state ...": a connection that broke in the middle of a query.
    asyncpg.InternalClientError,
)


class QueryError(RuntimeError):
    """A statement in `sql/` is missing, undeclared, or does not prepare against the database."""


class Query(NamedTuple):
    """One statement: `name` is `<folder>.<file stem>`, `sql` the text of the file at `path`."""

    name: str
    sql: str
    path: Path


def sql_file() -> Query:
    """A `QueryGroup` attribute: the statement in the file named like the attribute."""
    return Query("", "", Path())  # read by QueryGroup.__init_subclass__


class QueryGroup:
    """The statements of one `sql/<folder>/`, declared as attributes with `sql_file()`."""

    folder: ClassVar[str]
    root: ClassVar[Path]
    _declared: ClassVar[dict[Path, list[type[QueryGroup]]]] = {}

    def __init_subclass__(cls, *, folder: str, root: Path = SQL_DIR, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.folder, cls.root = folder, root
        for attribute, value in list(vars(cls).items()):
            if isinstance(value, Query):
                path = root / folder / f"{attribute}.sql"
                if not path.is_file():
                    raise QueryError(f"{cls.__name__}.{attribute} has no SQL file {path}")
                setattr(cls, attribute, Query(f"{folder}.{attribute}", path.read_text(), path))
        QueryGroup._declared.setdefault(root, []).append(cls)

    @classmethod
    def queries(cls) -> list[Query]:
        return [value for value in vars(cls).values() if isinstance(value, Query)]

    @staticmethod
    def declared(root: Path = SQL_DIR) -> list[type[QueryGroup]]:
        """Every group of `root` imported so far (the app imports every repository)."""
        return list(QueryGroup._declared.get(root, ()))


async def check_queries(
    conn: asyncpg.Connection | PooledConnection, groups: list[type[QueryGroup]] | None = None
) -> None:
    """Prepare every statement once; raise QueryError naming the first file that fails.

    A `.sql` file that no group declares is refused too: dead code, or a statement
    somebody forgot to wire in.

    On a connection with `statement_cache_size=0` (behind PgBouncer in transaction mode)
    asyncpg prepares unnamed statements, so the check leaves nothing on the server
    connection that another client could collide with (tests/test_pgbouncer.py).
    """
    groups = QueryGroup.declared() if groups is None else groups
    queries = [query for group in groups for query in group.queries()]
    on_disk = {path for root in {group.root for group in groups} for path in root.glob("*/*.sql")}
    if undeclared := sorted(on_disk - {query.path for query in queries}):
        raise QueryError(f"{_shown(undeclared[0])} is declared by no QueryGroup")
    for query in queries:
        try:
            await conn.prepare(query.sql)
        except asyncpg.PostgresError as exc:
            raise QueryError(f"{_shown(query.path)} does not prepare: {exc}") from None


def _shown(path: Path) -> str:
    """`sql/<folder>/<name>.sql`, whichever root it is under."""
    return "/".join(("sql", *path.parts[-2:]))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook replacing asyncpg's reset query.

    Our statements leave no session state (no SET, LISTEN or session advisory locks; asyncpg
    still rolls back any open transaction), so the default reset would only add a
    round trip per request (measured: about a quarter of GET throughput).
    """


def planner_settings(settings: Settings) -> dict[str, str]:
    """The session settings that shape plans (bench/bench.py gives its EXPLAIN and pgbench the same).

    No JIT: every statement here is short, and compiling one costs more than running it
    (seen: 14 ms of JIT for a 5 ms page of the events feed).
    """
    return {"random_page_cost": str(settings.random_page_cost), "jit": "off"}


async def session_settings_differ(
    conn: asyncpg.Connection | PooledConnection, settings: Settings
) -> list[tuple[str, str, str]]:
    """(name, wanted, actual) of each session setting the server did not take from the startup packet."""
    wanted = {"statement_timeout": str(settings.statement_timeout_ms), **planner_settings(settings)}
    query = "SELECT name, setting FROM pg_settings WHERE name = any($1::text[])"
    rows = await conn.fetch(query, list(wanted))
    return [
        (row["name"], wanted[row["name"]], row["setting"])
        for row in rows
        if not _same_setting(wanted[row["name"]], row["setting"])
    ]


def _same_setting(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


async def create_pool(settings: Settings, min_size: int) -> asyncpg.Pool:
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


class Statements:
    """The ways to run a `Query`, named for what comes back: Structs, records or one value.

    `Database` runs each on a pooled connection of its own; `Transaction` runs them all
    on the one connection of its transaction.
    """

    async def fetch_structs(self, query: Query, *args: Any, into: type[StructT]) -> list[StructT]:
        """All rows, each as an `into` Struct."""
        return [into(**row) for row in await self._run("fetch", query.sql, *args)]

    async def fetch_struct(self, query: Query, *args: Any, into: type[StructT]) -> StructT | None:
        """The first row as an `into` Struct, or None."""
        row = await self._run("fetchrow", query.sql, *args)
        return None if row is None else into(**row)

    async def fetch_records(self, query: Query, *args: Any) -> list[asyncpg.Record]:
        """All rows as asyncpg records (for statements that answer several things)."""
        rows: list[asyncpg.Record] = await self._run("fetch", query.sql, *args)
        return rows

    async def fetch_record(self, query: Query, *args: Any) -> asyncpg.Record | None:
        """The first row as an asyncpg record, or None."""
        row: asyncpg.Record | None = await self._run("fetchrow", query.sql, *args)
        return row

    async def fetch_value(self, query: Query, *args: Any) -> Any:
        """The first column of the first row, or None."""
        return await self._run("fetchval", query.sql, *args)

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        raise NotImplementedError


class Transaction(Statements):
    """Statements on one connection inside one transaction (from `Database.transaction()`)."""

    def __init__(self, conn: PooledConnection) -> None:
        self._conn = conn

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        return await getattr(self._conn, method)(sql, *args)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Statements whose failure is rolled back alone, leaving the transaction usable."""
        async with self._conn.transaction():
            yield


class Database(Statements):
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
            return cls(await create_pool(settings, settings.pool_min_size), settings)
        except DATABASE_OUTAGES as exc:
            log.warning("database unreachable at start-up (%s); answering 503 until it is back", exc)
            return cls(await create_pool(settings, 0), settings)

    async def close(self, grace_s: float = 10.0) -> None:
        """Close the pool, terminating connections still busy after `grace_s` seconds."""
        try:
            await asyncio.wait_for(self.pool.close(), grace_s)
        except TimeoutError:
            self.pool.terminate()

    async def acquire(self) -> PooledConnection:
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

    async def release(self, conn: PooledConnection) -> None:
        self._lent -= 1
        await self.pool.release(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PooledConnection]:
        """A pooled connection for several statements (a transaction, say)."""
        conn = await self.acquire()
        try:
            yield conn
        finally:
            await self.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Several statements that commit together, or not at all.

        Read committed whatever the server's default: the transactions here lock a row
        first and rely on each later statement seeing what committed before that lock.
        """
        async with self.connection() as conn, conn.transaction(isolation="read_committed"):
            yield Transaction(conn)

    async def ping(self) -> None:
        """One trivial round trip; raises when the database does not answer."""
        await self._run("execute", "SELECT 1")

    async def value_of(self, sql: str) -> Any:
        """The value of an inline statement: operational queries (positions, settings), not the
        API's, which live in sql/."""
        return await self._run("fetchval", sql)

    # Acquire and release by hand: a context manager per request is measurable on the hot path.
    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        conn = await self.acquire()
        try:
            return await getattr(conn, method)(sql, *args)
        finally:
            await self.release(conn)
