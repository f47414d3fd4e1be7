"""Events in the database: the feed's pages, its watcher's tick, and retention."""

from __future__ import annotations

import asyncpg

from service.db import Database, QueryGroup, sql_file
from service.errors import EventsRemoved


class EventQueries(QueryGroup, folder="events"):
    page = sql_file()
    tick = sql_file()
    prune = sql_file()


async def page(db: Database, *, after: int, horizon: int, limit: int) -> bytes:
    """`{"items": [...], "next_after": ...}` of the events after `after`, up to `horizon`."""
    rows = await db.fetch_records(EventQueries.page, after, horizon, limit + 1)
    if after < rows[0]["removed_through"]:
        raise EventsRemoved(
            after, rows[0]["removed_through"], resume_after=max(horizon, rows[0]["removed_through"])
        )
    items = [row["item"] for row in rows if row["id"] is not None]
    more = len(items) > limit
    items = items[:limit]
    next_after = rows[limit - 1]["id"] if more else None
    after_page = "null" if next_after is None else str(next_after)
    return f'{{"items":[{",".join(items)}],"next_after":{after_page}}}'.encode()


async def tick(db: Database, *, horizon: int, take_xid: bool) -> asyncpg.Record:
    row = await db.fetch_record(EventQueries.tick, horizon, take_xid)
    assert row is not None  # the statement always answers one row
    return row


async def prune(db: Database, *, retention_days: int, batch: int) -> int:
    removed: int = await db.fetch_value(EventQueries.prune, retention_days, batch)
    return removed
