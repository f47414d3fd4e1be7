"""How fast one hot course takes students: 64 clients enrolling different students in it.

    .venv/bin/python bench/hot_course.py [--connections 64] [--seats 1000] [--duration 10] [--rounds 3]

A fresh database (the embedded PostgreSQL 16 with synchronous_commit off, as `make bench`;
or a new database on $BENCH_DATABASE_URL's server, with that server's settings), migrated,
with 300,000 students and, around the hot courses, the data of `make bench`; the service
as deployed (`python -m service`, access log off); wrk with bench/hot_course.lua, where
every request is a POST /students/{next id}/courses of the one hot course. Per round, in
this order:

- fill: a course of `--seats` (1,000) from empty, for `--duration` s. Exactly that many
  must be enrolled, the rest refused with 409; the rate is the seats over the time between
  the first and the last admission, read from their `enrolled_at` (each its transaction's
  start).
- full: the same course, now full, for `--duration` s: every answer a 409.
- limited: a course of 100,000 seats (the most), which the run never fills: every request
  takes the course row's lock, moves its counter and commits, for `--duration` s.
- unlimited: the same on a course without a capacity (FOR KEY SHARE only, no counter).

Prints each round and the medians; exits 1 if any answer or count was not what the
contract says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
from enrollbench import HERE, BenchError
from enrollbench.db import migrate, open_database
from enrollbench.service import Service

from service.keys.cli import create_key

STUDENTS = 300_000
WORKLOADS = ["fill", "limited", "unlimited"]
MOST_SEATS = 100_000


class Run:
    """The database, the service and where the next unused student id is."""

    def __init__(self, url: str, base: str, args: argparse.Namespace) -> None:
        self.url, self.base, self.args = url, base, args
        self.next_student = 10_001  # past the seeded students, who take courses already

    def wrk(self, course: int, seconds: int) -> dict[str, Any]:
        """wrk on the hot course for `seconds`, from the next unused student on."""
        command = ["wrk", "-t1", f"-c{self.args.connections}", f"-d{seconds}s", "--timeout", "10s"]
        command += ["-s", str(HERE / "hot_course.lua"), self.base, "--", str(course), str(self.next_student)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith('{"requests"')), None)
        if line is None:
            raise BenchError(f"wrk: {done.stderr.strip()[-300:]}")
        result: dict[str, Any] = json.loads(line)
        self.next_student += result["requests"] + self.args.connections  # answered, and in flight
        if self.next_student > STUDENTS:
            raise BenchError("out of students: fewer rounds or a shorter --duration")
        return result

    async def course(self, capacity: int | None) -> int:
        """A new course; without a capacity it names no column the code before 0005 lacks."""
        conn = await asyncpg.connect(self.url)
        try:
            code = f"HOT{await conn.fetchval('SELECT count(*) + 1 FROM courses')}"
            if capacity is None:
                course_id: int = await conn.fetchval(
                    "INSERT INTO courses (code, title) VALUES ($1, 'Hot') RETURNING id", code
                )
            else:
                course_id = await conn.fetchval(
                    "INSERT INTO courses (code, title, capacity, enrolled)"
                    " VALUES ($1, 'Hot', $2, 0) RETURNING id",
                    code,
                    capacity,
                )
            return course_id
        finally:
            await conn.close()

    async def seats(self, course: int, *, counter: bool = True) -> tuple[int | None, int, float]:
        """The course's counter, its enrollments counted, and the seconds from the first to the last."""
        conn = await asyncpg.connect(self.url)
        try:
            row = await conn.fetchrow(
                f"SELECT {'c.enrolled' if counter else 'NULL'} AS enrolled, count(sc.student_id) AS n,"
                "       extract(epoch FROM max(sc.enrolled_at) - min(sc.enrolled_at)) AS span"
                "  FROM courses c LEFT JOIN student_courses sc ON sc.course_id = c.id"
                " WHERE c.id = $1 GROUP BY c.id",
                course,
            )
            assert row is not None
            return row["enrolled"], row["n"], float(row["span"] or 0)
        finally:
            await conn.close()

    async def round(self) -> dict[str, Any]:
        measured: dict[str, Any] = {"problems": []}
        if "fill" in self.args.workloads:
            await self.fill_then_full(measured)
        for name, capacity in (("limited", MOST_SEATS), ("unlimited", None)):
            if name not in self.args.workloads:
                continue
            course = await self.course(capacity)
            result = self.wrk(course, self.args.duration)
            counter, counted, _ = await self.seats(course, counter=capacity is not None)
            # The requests still in flight when wrk stops are answered to nobody, and enroll too.
            answered = range(result["enrolled"], result["enrolled"] + self.args.connections + 1)
            if result["full"] or result["other"] or result["socket_errors"] or counted not in answered:
                measured["problems"].append(f"{name}: {result}, {counted} rows")
            if capacity is not None and counter != counted:
                measured["problems"].append(f"{name}: counter {counter} for {counted} rows")
            measured[name] = result
        return measured

    async def fill_then_full(self, measured: dict[str, Any]) -> None:
        """A course of `--seats` from empty, then the same course full."""
        seats = self.args.seats
        hot = await self.course(seats)
        fill = self.wrk(hot, self.args.duration)  # full long before the end, but on a busy machine
        counter, counted, span = await self.seats(hot)
        if (fill["enrolled"], counter, counted) != (seats, seats, seats):
            measured["problems"].append(
                f"fill: {fill['enrolled']} answered 200, counter {counter}, {counted} rows"
            )
        measured["fill_seats_per_s"] = round((seats - 1) / span) if span else None
        measured["fill_s"] = round(span, 3)
        full = measured["full"] = self.wrk(hot, self.args.duration)
        if full["enrolled"] or full["other"] or full["socket_errors"]:
            measured["problems"].append(f"full course: {full}")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=64, help="concurrent clients (wrk connections)")
    parser.add_argument("--seats", type=int, default=1000, help="the capacity of the course filled")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each sustained workload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workloads",
        type=lambda text: text.split(","),
        default=WORKLOADS,
        help="comma-separated, from fill (and full), limited, unlimited; unlimited alone runs on a "
        "schema before migration 0005, to compare",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise BenchError("wrk is missing: apt-get install wrk (make bench installs it)")
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="hot-course-")))
        url, _ = open_database(os.environ.get("BENCH_DATABASE_URL"), tmp, cleanup)
        migrate(url)
        conn = await asyncpg.connect(url)
        await seed(conn)
        settings = {
            name: await conn.fetchval(f"SHOW {name}") for name in ("server_version", "synchronous_commit")
        }
        await conn.close()
        key = (await asyncio.to_thread(create_key, url, name="hot-course", scopes=["write"])).key
        env = {"DATABASE_URL": url, "ACCESS_LOG": "false", "BENCH_API_KEY": key}
        os.environ["BENCH_API_KEY"] = key  # for wrk
        print(f"PostgreSQL {settings['server_version']}, synchronous_commit={settings['synchronous_commit']}")
        with Service([sys.executable, "-m", "service"], env, tmp / "service.log", 60) as service:
            run = Run(url, service.base, args)
            run.wrk(await run.course(None), 2)  # warm-up, unmeasured
            rounds = []
            for number in range(1, args.rounds + 1):
                measured = await run.round()
                rounds.append(measured)
                print(f"round {number}: " + summary(measured))
                for problem in measured["problems"]:
                    print(f"  PROBLEM {problem}")
    found = [name for name in ("full", "limited", "unlimited") if name in rounds[0]]
    medians = [f"fill {median(rounds, 'fill_seats_per_s')} seats/s"] if "fill_s" in rounds[0] else []
    medians += [
        f"{name} {median(rounds, name, 'rps')} req/s, p50 {median(rounds, name, 'p50_ms')} ms, "
        f"p99 {median(rounds, name, 'p99_ms')} ms"
        for name in found
    ]
    print(f"medians of {len(rounds)}: " + "; ".join(medians))
    return 1 if any(r["problems"] for r in rounds) else 0


async def seed(conn: asyncpg.Connection) -> None:
    """The students, and around the hot course the data of `make bench` (200 courses, 10,000
    students taking 5 each): the service plans its statements for tables of that size, as in
    service, not for the empty tables of a fresh database (a plan made then, with sequential
    scans, is kept by every pooled connection)."""
    await conn.execute(
        "INSERT INTO students (name, email)"
        " SELECT 'S', 's' || i || '@x.io' FROM generate_series(1, $1::int) AS i",
        STUDENTS,
    )
    await conn.execute(
        "INSERT INTO courses (code, title) SELECT 'C' || i, 'T' FROM generate_series(1, 200) AS i"
    )
    await conn.execute(
        "INSERT INTO student_courses (student_id, course_id)"
        " SELECT s, 1 + ((s - 1) * 5 + j) % 200"
        "   FROM generate_series(1, 10000) AS s, generate_series(0, 4) AS j"
    )
    await conn.execute("VACUUM ANALYZE")


def summary(measured: dict[str, Any]) -> str:
    parts = []
    if "fill_s" in measured:
        parts.append(f"fill {measured['fill_seats_per_s']} seats/s ({measured['fill_s']} s)")
    for name in ("full", "limited", "unlimited"):
        if r := measured.get(name):
            parts.append(f"{name} {r['rps']:.0f} req/s p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms")
    return "; ".join(parts)


def median(rounds: list[dict[str, Any]], *path: str) -> float:
    values = []
    for measured in rounds:
        value: Any = measured
        for key in path:
            value = value[key]
        values.append(value)
    return round(float(statistics.median(values)), 1)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
