"""How many new enrollments per second POST /enrollments makes in 10,000-pair requests.

    .venv/bin/python bench/bulk_rate.py [--requests 40] [--concurrency 2]

A fresh database on $BENCH_DATABASE_URL's server (or the embedded PostgreSQL), migrated
and seeded with enough students and courses that every pair sent is new; the service as
deployed (`python -m service`, access log off) on a free port; then `--requests` bodies of
10,000 new pairs, `--concurrency` at a time over HTTP, events written as always. Prints
the enrollments per second over the whole run and the slowest request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from enrollbench.service import Service

from service import migrate
from service.devdb import start_embedded, with_database
from service.keys.cli import create_key

PAIRS = 10_000
COURSES = 100


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL") or start_embedded()
    name = f"bulk_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    try:
        await measure(url, args)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def measure(url: str, args: argparse.Namespace) -> None:
    migrate.apply(url)
    students = args.requests * PAIRS // COURSES
    conn = await asyncpg.connect(url)
    await conn.execute(
        f"INSERT INTO courses (code, title) SELECT 'C' || i, 'T' FROM generate_series(1, {COURSES}) i"
    )
    await conn.execute(
        "INSERT INTO students (name, email)"
        " SELECT 'S', 's' || i || '@x.io' FROM generate_series(1, $1::int) AS i",
        students,
    )
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    key = (await asyncio.to_thread(create_key, url, name="bulk-rate", scopes=["write"])).key
    per_body = PAIRS // COURSES  # students per request, each in every course
    bodies = [
        {
            "enrollments": [
                {"student_id": s, "course_id": c} for s in range(first, first + per_body) for c in courses
            ]
        }
        for first in range(1, students + 1, per_body)
        for courses in [range(1, COURSES + 1)]
    ]
    log = Path(tempfile.mkstemp(prefix="bulk-rate-", suffix=".log")[1])
    env = {"DATABASE_URL": url, "ACCESS_LOG": "false"}
    with Service([sys.executable, "-m", "service"], env, log, 60) as service:
        queue: asyncio.Queue[dict[str, list[dict[str, int]]]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        slowest = 0.0
        created = 0

        async def client() -> None:
            nonlocal slowest, created
            async with httpx.AsyncClient(base_url=service.base, timeout=60) as http:
                while not queue.empty():
                    body = queue.get_nowait()
                    began = time.monotonic()
                    answer = await http.post(
                        "/enrollments", json=body, headers={"Authorization": f"Bearer {key}"}
                    )
                    answer.raise_for_status()
                    created += answer.json()["created"]
                    slowest = max(slowest, time.monotonic() - began)

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        seconds = time.monotonic() - began
    print(
        f"{created:,} enrollments in {len(bodies)} requests of {PAIRS:,} pairs, {args.concurrency} at a time:"
        f" {created / seconds:,.0f} enrollments/s; slowest request {slowest * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
