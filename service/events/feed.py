"""How far the feed may be read without a gap, and the long-polling waiters.

Event ids come from a sequence, so they are not handed out in commit order: transaction
A takes id 10, B takes 11, B commits, and a reader serving `id > after` would show 11
and let its consumer move past 10 before A commits. The feed therefore serves events
only up to a *horizon*, a row id at or below which every transaction that took an id has
ended (committed, so visible, or rolled back, so never to be seen). (A row of `events`
holds one statement's events, ids id, id + 1, ...; the sequence steps past them.)

- each tick reads the sequence's last value, `issued`;
- every write takes its transaction id before its event ids (each statement inserts its
  events from the rows its own write returned), so whoever took an id up to `issued`
  had a transaction id before the next tick starts, and the next tick takes one itself,
  `xid`, above all of theirs (a snapshot's `xmax` is no such bound: it is the newest
  *completed* transaction + 1, and transactions running above it appear nowhere in it);
- that tick commits, so every later snapshot lists each transaction below `xid` still
  running; once such a snapshot's `xmin` reaches `xid`, all of them have ended, and
  `issued` becomes the horizon. A tick takes an xid only when ids were handed out
  beyond the horizon: an idle feed costs none.

Ids are thus served in order, each once, and the order of a row's events is the order
of its row locks (ids are taken after the locks). The price: a committed event waits
for every transaction older than it, at most the statement timeout for the service's
own. Compared with logical decoding (a replication slot and a decoder to run) or a
commit-ordered counter (one lock every write waits for), it costs the writes nothing.

One `EventFeed` per process ticks on one pooled connection at a time, every `POLL_S`
or at once when a request asks for a fresh horizon; long-polling requests wait on an
asyncio event and hold no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import FrameType

from service.db import Database
from service.events import repository

log = logging.getLogger("service.events")

POLL_S = 0.1  # a committed event reaches a long-polling consumer within about two ticks
HURRY_GAP_S = 0.002  # between ticks run back to back for a request
FRESH_TIMEOUT_S = 1.0  # how long a request waits for the horizon to cover what it arrived after
PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 1000


class EventFeed:
    def __init__(self, *, retention_days: int) -> None:
        self.retention_days = retention_days
        self.horizon = 0  # every event id up to this one is settled
        self.newest = 0  # the newest event at or below the horizon
        self.closing = False
        self._ticks = 0  # ticks completed
        self._issued: deque[tuple[int, int]] = deque(maxlen=64)  # (tick number, issued) of recent ticks
        self._unsettled: deque[tuple[int, int]] = deque()  # (issued, the xid of the tick after it)
        self._previous_issued: int | None = None
        self._ticked = asyncio.Event()  # set (and replaced) by every tick
        self._advanced = asyncio.Event()  # set (and replaced) only when `newest` moves
        self._hurry = asyncio.Event()

    async def fresh_horizon(self) -> int:
        """The horizon once it covers every id handed out before this call, or what is settled
        after FRESH_TIMEOUT_S (an older transaction may hold it back)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FRESH_TIMEOUT_S
        arrived_after = self._ticks + 1  # a tick still running may have read `issued` before we came
        while not self.closing:
            goal = next((issued for tick, issued in self._issued if tick > arrived_after), None)
            if (goal is not None and self.horizon >= goal) or loop.time() >= deadline:
                break
            self._hurry.set()
            await self._until(self._ticked, deadline)
        return self.horizon

    async def wait_beyond(self, after: int, seconds: float) -> None:
        """Return once an event after `after` is settled, after `seconds`, or at shutdown.

        Woken only when the newest event moves: a thousand waiters cost nothing per tick.
        """
        deadline = asyncio.get_running_loop().time() + seconds
        while self.newest <= after and not self.closing and asyncio.get_running_loop().time() < deadline:
            await self._until(self._advanced, deadline)

    def close(self) -> None:
        """Answer every waiting request now (shutdown)."""
        self.closing = True
        self._ticked.set()
        self._advanced.set()

    @staticmethod
    async def _until(event: asyncio.Event, deadline: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))

    async def tick(self, db: Database) -> None:
        """Read the snapshot and the sequence once; move the horizon; wake the waiters."""
        # The previous tick's `issued`, if beyond the horizon, needs this tick's xid.
        pending = self._previous_issued if (self._previous_issued or 0) > self.horizon else None
        row = await repository.tick(db, horizon=self.horizon, take_xid=pending is not None)
        if pending is not None:
            self._unsettled.append((pending, row["xid"]))
        self._previous_issued = row["issued"]
        while self._unsettled and self._unsettled[0][1] <= row["xmin"]:
            self.horizon = max(self.horizon, self._unsettled.popleft()[0])
        if row["newest"] > self.newest:
            self.newest = row["newest"]
            self._advanced.set()
            self._advanced = asyncio.Event()
        self._ticks += 1
        self._issued.append((self._ticks, row["issued"]))
        self._ticked.set()
        self._ticked = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self, db: Database) -> AsyncIterator[None]:
        """Tick (and remove old events) while inside; answer the waiters on the way out."""
        tasks = [asyncio.create_task(self._tick_forever(db), name="event-feed-ticks")]
        if self.retention_days:
            tasks.append(asyncio.create_task(self._prune_forever(db), name="event-retention"))
        restore_sigterm = self._close_on_sigterm()
        try:
            yield
        finally:
            restore_sigterm()
            self.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _close_on_sigterm(self) -> Callable[[], None]:
        """Answer the long polls as soon as SIGTERM arrives.

        uvicorn drains the requests in flight before it ends the lifespan, so without this a
        waiting request would hold the shutdown for up to its 30 s. Its handler (installed
        before the lifespan starts, restored after) still runs: this one only comes first.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # signal handlers belong to the main thread (a test client may run elsewhere)
        loop, previous = asyncio.get_running_loop(), signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.close)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:  # nobody else handles it: terminate, as before
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)

        def restore() -> None:
            if signal.getsignal(signal.SIGTERM) is on_sigterm:
                signal.signal(signal.SIGTERM, previous)

        signal.signal(signal.SIGTERM, on_sigterm)
        return restore

    async def _tick_forever(self, db: Database) -> None:
        failing = False
        while not self.closing:
            try:
                await self.tick(db)
                failing = False
            except Exception as exc:  # the ticks must outlive any failure: they are the feed
                if not failing:  # once per outage, not ten times a second
                    log.warning("event feed paused: cannot read the database (%r)", exc)
                failing = True
            if self._hurry.is_set():
                self._hurry.clear()
                await asyncio.sleep(HURRY_GAP_S)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), POLL_S)

    async def _prune_forever(self, db: Database) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            try:
                await prune(db, retention_days=self.retention_days)
            except Exception as exc:  # try again next time, whatever it was
                log.warning("old events not removed: %r", exc)


async def prune(db: Database, *, retention_days: int) -> int:
    """Remove the events older than `retention_days`, a small batch at a time; answers how many."""
    total = 0
    while (removed := await repository.prune(db, retention_days=retention_days, batch=PRUNE_BATCH)) > 0:
        total += removed
        await asyncio.sleep(0.01)  # let requests in between batches
    if total:
        log.info("removed %d events older than %d days", total, retention_days)
    return total
