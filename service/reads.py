"""Reads on a streaming replica (`DATABASE_READ_URL`), only while it is fresh enough.

`db_of(request)` (service/params.py) is the one place that picks a database: the GETs
of students, courses and enrollments come here; the events feed, API keys, /ready and
every write stay on the primary.

How fresh is the replica? Every `poll_s` the watcher reads the primary's WAL insert
position at time t, then the replica's replay position. Once the replica has replayed
past the position read at t, it holds every transaction committed before t: the replica
is "fresh as of t". Reads go to it while `now - fresh_as_of <= DB_READ_MAX_LAG_MS`; a
lagging, paused or unreachable replica simply stops being fresh, and reads go to the
primary. A replica query that fails (the replica died, restarted, or cancelled the query
for a recovery conflict) is run again on the primary, so a client never sees the failure;
the replica is then skipped until the watcher finds it fresh again.

Read your writes: a request that wrote (any non-GET answered by the resource routes)
stamps its API key with the time its answer started, after its commit. That key's reads
stay on the primary until the replica is fresh as of that stamp: in this process, a
client reads what it wrote. Across processes, the load balancer keeps a key on one
process (HAProxy `balance hdr(Authorization)`, docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.db import DATABASE_OUTAGES, Database, Transaction, create_pool
from service.settings import Settings

log = logging.getLogger("service.reads")

# The paths whose GETs may be served by the replica: students, courses, enrollments.
REPLICA_PATHS = ("/students", "/courses")
READ_METHODS = frozenset({"GET", "HEAD"})

# Failures after which a read is run again on the primary: the replica is away, or it
# cancelled the query because replay needed what the query held (SQLSTATE 40001).
REPLICA_FAILURES: tuple[type[Exception], ...] = (*DATABASE_OUTAGES, asyncpg.TransactionRollbackError)

# Positions as bytes since 0/0, comparable numbers.
PRIMARY_POSITION = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
REPLAYED_POSITION = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"

NEVER = float("-inf")
# A WAL page starts with a header (24 bytes, 40 on a segment's first page). At a page
# boundary the insert position points past it, while a replica that replayed everything
# reports the boundary itself: positions inside a header count as the boundary.
WAL_PAGE_BYTES = 8192
WAL_PAGE_HEADER_BYTES = 40


class ReplicaDatabase(Database):
    """The replica's pool: a single statement that fails here runs again on the primary.

    Several statements together (`transaction()`, `connection()`) always go to the
    primary: a transaction cannot move halfway, and reads that need one are rare.
    """

    def __init__(self, pool: asyncpg.Pool, settings: Settings, reads: ReadRouting) -> None:
        super().__init__(pool, settings)
        self.reads = reads

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        try:
            return await super()._run(method, sql, *args)
        except REPLICA_FAILURES as exc:
            self.reads.replica_failed(exc)
            return await self.reads.primary._run(method, sql, *args)

    async def replayed_position(self) -> int | None:
        """How far the replica has replayed the primary's WAL (here only: no fallback)."""
        position: int | None = await super()._run("fetchval", REPLAYED_POSITION)
        return position

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        async with self.reads.primary.connection() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.reads.primary.transaction() as tx:
            yield tx


class ReadRouting(Collector):
    """Chooses the replica or the primary for each read, from the watcher's freshness."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_lag_s = settings.read_max_lag_ms / 1000
        # Often enough that a healthy replica is always fresh within the bound.
        self.poll_s = min(0.1, self.max_lag_s / 5)
        self.fresh_as_of = NEVER  # time.monotonic(): the replica holds every commit made before it
        self._primary: Database | None = None
        self._replica: ReplicaDatabase | None = None
        self._writes: dict[int | None, float] = {}  # API key id -> when its latest write was answered
        self._samples: deque[tuple[float, int]] = deque(maxlen=10_000)  # (time, primary WAL position)
        self.served = {"replica": 0, "primary": 0}  # reads, by where they were sent
        self.fallbacks = 0  # replica reads that failed and ran again on the primary
        self._failing = False

    def __deepcopy__(self, memo: dict[int, Any]) -> ReadRouting:
        # Litestar deep-copies middleware arguments; RecordWrites must stamp this very object.
        return self

    @property
    def primary(self) -> Database:
        assert self._primary is not None, "ReadRouting.running() was not entered"
        return self._primary

    def database_for(self, key_id: int | None) -> Database:
        """The replica when it is fresh enough and holds this caller's latest write, else the primary."""
        fresh_as_of = self.fresh_as_of
        if (
            self._replica is not None
            and time.monotonic() - fresh_as_of <= self.max_lag_s
            and self._writes.get(key_id, NEVER) < fresh_as_of
        ):
            self.served["replica"] += 1
            return self._replica
        self.served["primary"] += 1
        return self.primary

    def wrote(self, key_id: int | None) -> None:
        """This caller's write has committed: its reads wait for the replica to hold it."""
        self._writes[key_id] = time.monotonic()

    def replica_failed(self, exc: BaseException) -> None:
        self.fallbacks += 1
        self.fresh_as_of = NEVER  # skip it until the watcher proves it fresh again
        if not self._failing:
            log.warning("read replica failed (%r); reading from the primary until it is back", exc)
            self._failing = True

    async def watch_once(self) -> None:
        """One sample: the primary's position now, then how far the replica has replayed."""
        primary, replica = self.primary, self._replica
        assert replica is not None
        now = time.monotonic()
        position: int = await primary.value_of(PRIMARY_POSITION)
        if position % WAL_PAGE_BYTES <= WAL_PAGE_HEADER_BYTES:
            position -= position % WAL_PAGE_BYTES
        self._samples.append((now, position))
        replayed = await replica.replayed_position()
        if replayed is None:
            raise RuntimeError("DATABASE_READ_URL is not a replica (pg_last_wal_replay_lsn() is null)")
        while self._samples and self._samples[0][1] <= replayed:
            self.fresh_as_of = max(self.fresh_as_of, self._samples.popleft()[0])
        # Older samples can no longer make the replica fresh enough, nor older writes matter.
        while self._samples and self._samples[0][0] < now - self.max_lag_s:
            self._samples.popleft()
        for key_id in [k for k, at in self._writes.items() if at < now - self.max_lag_s]:
            del self._writes[key_id]
        if self._failing and self.fresh_as_of >= now:
            log.warning("read replica is back and fresh; reads go to it again")
            self._failing = False

    async def _watch_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.watch_once(), timeout=max(1.0, self.max_lag_s))
            except Exception as exc:  # the watcher must outlive any failure: it is what brings reads back
                self.replica_failed(exc)
                self.fallbacks -= 1  # not a read
            await asyncio.sleep(self.poll_s)

    @contextlib.asynccontextmanager
    async def running(self, primary: Database) -> AsyncIterator[None]:
        """Open the replica's pool (empty if it is down) and watch it, while inside."""
        self._primary = primary
        replica_url = self.settings.database_read_url
        assert replica_url is not None, "ReadRouting needs DATABASE_READ_URL"
        replica_settings = msgspec.structs.replace(self.settings, database_url=replica_url)
        try:
            pool = await create_pool(replica_settings, replica_settings.pool_min_size)
        except DATABASE_OUTAGES as exc:
            log.warning("read replica unreachable at start-up (%s); reading from the primary", exc)
            pool = await create_pool(replica_settings, 0)
        self._replica = ReplicaDatabase(pool, replica_settings, self)
        watcher = asyncio.create_task(self._watch_forever(), name="read-replica-watcher")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            replica, self._replica = self._replica, None
            await replica.close()

    def collect(self) -> Iterator[Metric]:
        fresh = time.monotonic() - self.fresh_as_of <= self.max_lag_s
        yield GaugeMetricFamily(
            "enrollment_db_read_replica_fresh",
            "1 while reads go to the replica (it is within DB_READ_MAX_LAG_MS of the primary).",
            value=int(fresh and self._replica is not None),
        )
        reads = CounterMetricFamily(
            "enrollment_db_reads", "Reads of students, courses and enrollments, by database.", labels=["db"]
        )
        for where, count in self.served.items():
            reads.add_metric([where], count)
        yield reads
        yield CounterMetricFamily(
            "enrollment_db_read_fallbacks",
            "Replica reads that failed and were answered from the primary instead.",
            value=self.fallbacks,
        )


class RecordWrites:
    """Middleware (resource routes, behind the key check): stamps the caller's key when a
    write is answered, so its next reads go where the write is visible."""

    def __init__(self, app: ASGIApp, reads: ReadRouting) -> None:
        self.app = app
        self.reads = reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") in READ_METHODS:
            await self.app(scope, receive, send)
            return
        key_id: int | None = scope["state"].get("key_id")

        async def stamping_send(message: Message) -> None:
            if message["type"] == "http.response.start":  # the handler has committed by now
                self.reads.wrote(key_id)
            await send(message)

        await self.app(scope, receive, stamping_send)
