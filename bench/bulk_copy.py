"""Arrays as parameters (what POST /enrollments does) against COPY into a staging table,
for 10,000-pair batches, measured at the database with the HTTP layer left out.

    .venv/bin/python bench/bulk_copy.py [--batches 30] [--rounds 3]

Both ways run the same statement on the same data (`sql/enrollments/bulk.sql`: locks,
unknown ids, the insert and its events row); they differ only in how the pairs reach
PostgreSQL:
- `arrays`: one round trip, the pairs as two bigint[] parameters (`unnest($1, $2)`);
- `copy`: in one transaction, COPY (binary) into a temporary table that empties at
  commit, then the statement reading the pairs from it: three round trips.
Each round takes fresh students, so every pair is new; rounds alternate the two ways.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service import migrate
from service.devdb import start_embedded, with_database
from service.enrollments.repository import EnrollmentQueries

PAIRS = 10_000
COURSES = 100
STAGING = """CREATE TEMPORARY TABLE IF NOT EXISTS bulk_pairs (student_id bigint, course_id bigint)
             ON COMMIT DELETE ROWS"""
FROM_STAGING = EnrollmentQueries.bulk.sql.replace(
    "unnest($1::bigint[], $2::bigint[]) AS r(student_id, course_id)", "bulk_pairs"
).replace("$3::bigint", "$1::bigint")


async def arrays(conn: asyncpg.Connection, pairs: list[tuple[int, int]]) -> int:
    row = await conn.fetchrow(EnrollmentQueries.bulk.sql, [s for s, _ in pairs], [c for _, c in pairs], None)
    assert row is not None
    return int(row["created"])


async def copy(conn: asyncpg.Connection, pairs: list[tuple[int, int]]) -> int:
    async with conn.transaction():
        await conn.copy_records_to_table("bulk_pairs", records=pairs, columns=["student_id", "course_id"])
        row = await conn.fetchrow(FROM_STAGING, None)
    assert row is not None
    return int(row["created"])


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    assert EnrollmentQueries.bulk.sql != FROM_STAGING, "bulk.sql changed: update the staging variant"
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded()
    name = f"bulk_copy_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    try:
        migrate.apply(url)
        conn = await asyncpg.connect(url)
        try:
            await measure(conn, args)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def measure(conn: asyncpg.Connection, args: argparse.Namespace) -> None:
    per_batch = PAIRS // COURSES  # students per batch, each in every course
    students = per_batch * args.batches * args.rounds * 2
    await conn.execute(
        f"INSERT INTO courses (code, title) SELECT 'C' || i, 'T' FROM generate_series(1, {COURSES}) i"
    )
    await conn.execute(
        "INSERT INTO students (name, email)"
        " SELECT 'S', 's' || i || '@x.io' FROM generate_series(1, $1::int) i",
        students,
    )
    await conn.execute("VACUUM ANALYZE")
    await conn.execute(STAGING)
    next_student = 1
    rates: dict[str, list[float]] = {"arrays": [], "copy": []}
    for round_number in range(args.rounds):
        ways = [("arrays", arrays), ("copy", copy)]
        for name, way in ways if round_number % 2 == 0 else reversed(ways):
            batches = []
            for _ in range(args.batches):
                batch_students = range(next_student, next_student + per_batch)
                batches.append([(s, c) for s in batch_students for c in range(1, COURSES + 1)])
                next_student += per_batch
            began, created = time.monotonic(), 0
            for pairs in batches:
                created += await way(conn, pairs)
            rates[name].append(created / (time.monotonic() - began))
    for name, values in rates.items():
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:7} {max(values):9,.0f} enrollments/s at best ({shown})")


if __name__ == "__main__":
    asyncio.run(main())
