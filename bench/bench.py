"""Benchmark the enrollment endpoints end to end: `make bench` (issue 5).

One run, top to bottom (every step has a time limit; on Ctrl-C or any failure the
processes this script started are stopped and the database is thrown away):

1. Database: a fresh PostgreSQL 16 (the embedded `pgserver`, in a temp dir, with
   synchronous_commit=off) or a fresh database on the server of $BENCH_DATABASE_URL;
   migrated with the project's migrations (`python -m service.migrate apply`); seeded
   with generate_series (only the contract's columns; the seeded enrollments are
   deterministic and carry enrolled_at = 2000-01-01); VACUUM ANALYZE.
2. Probe: the service, started as deployed (`python -m service`), answers one GET and
   one POST right. The statements it ran for them are read from the Postgres log, shown
   with EXPLAIN (ANALYZE, BUFFERS), and turned into pgbench scripts (embedded database
   only; otherwise pgbench runs bench/get.sql and bench/post.sql, the ceiling peer's SQL).
3. Rounds (--rounds, the order alternates): the service under wrk (GET, POST, 90/10 mix)
   and pgbench running the same SQL without HTTP, each workload on data reset to the
   seeded state. The service's RSS after each.
4. Soak (--soak seconds of the mix on a fresh service): its RSS at start and end.
5. Results: a table on stdout; bench/results/<time>.json and <time>.md; bench/results/chart.png.
   Exit status 1 if any measured run had an error (a non-2xx answer or a socket error).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from service.db import planner_settings
from service.devdb import with_database
from service.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOADS = ("get", "post", "mix")
SEEDED_AT = "2000-01-01T00:00:00Z"
DEFAULT_DATA = {"students": 10_000, "courses": 200, "per_student": 5}
SCALE_DATA = {"students": 1_000_000, "courses": 1_000, "per_student": 10}
STUDENTS_PER_STATEMENT = 50_000  # seeding goes in chunks this size so that progress can be shown

EXAMPLES = """examples:
  make bench                                              # default data, 1 round, 60 s soak
  make bench BENCH_ARGS="--rounds 3"                      # medians of 3 alternating rounds
  make bench BENCH_ARGS="--scale --rounds 2"              # 1M students, 10M enrollments
  make bench BENCH_ARGS="--duration 3 --warmup 1 --soak 10"   # a quick look
  BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/postgres make bench
  .venv/bin/python bench/bench.py --server-cmd "python ../shared/perf/peers/ceiling/app.py"
"""


class BenchError(Exception):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/bench.py",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--students", type=int, help="students to seed (default 10000; 1M with --scale)")
    data.add_argument("--courses", type=int, help="courses to seed (default 200; 1000 with --scale)")
    data.add_argument("--per-student", type=int, help="enrollments per student (default 5; 10 with --scale)")
    data.add_argument("--scale", action="store_true", help="1M students, 1000 courses, 10M enrollments")
    data.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="create the fresh database on this server (unix socket or loopback only) instead of "
        "starting an embedded one; default $BENCH_DATABASE_URL",
    )
    load = p.add_argument_group("load")
    load.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, from get,post,mix")
    load.add_argument("--duration", type=int, default=10, help="seconds measured per workload (10)")
    load.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each (2)")
    load.add_argument("--connections", type=int, default=32, help="wrk connections = pgbench clients (32)")
    load.add_argument("--threads", type=int, default=1, help="wrk threads = pgbench -j (1)")
    load.add_argument("--write-pct", type=int, default=10, help="share of POSTs in the mix, in %% (10)")
    load.add_argument("--rounds", type=int, default=1, help="alternating rounds; medians are reported (1)")
    load.add_argument(
        "--soak", type=int, default=60, help="seconds of the mix for the RSS soak; 0 skips (60)"
    )
    load.add_argument("--no-pgbench", action="store_true", help="measure the service only")
    load.add_argument(
        "--quiet-wait",
        type=int,
        default=10,
        help="before each measurement, wait up to this many seconds for the machine to be idle (10)",
    )
    server = p.add_argument_group("server")
    server.add_argument("--workers", type=int, default=1, help="uvicorn worker processes: WORKERS (1)")
    server.add_argument(
        "--access-log",
        action="store_true",
        help="keep the JSON access log on (ACCESS_LOG=true, as deployed); off by default, like the "
        "peers and pgbench, which write none",
    )
    server.add_argument(
        "--server-cmd",
        help="serve with this command instead of `python -m service` (run from the project root, with "
        "DATABASE_URL, HOST, PORT and WORKERS in its environment), e.g. a peer for comparison",
    )
    load.add_argument(
        "--pgbench-sql",
        choices=("service", "bench"),
        default="service",
        help="what pgbench runs: the service's own statements, taken from the Postgres log (default; "
        "embedded database only), or bench/get.sql and post.sql (the ceiling peer's)",
    )
    server.add_argument("--start-timeout", type=int, default=60, help="seconds to wait for /health (60)")
    p.add_argument("--results", type=Path, default=HERE / "results", help="output folder (bench/results)")
    args = p.parse_args(argv)

    args.workloads = [w for w in args.workloads.split(",") if w]
    if not args.workloads or not set(args.workloads) <= set(WORKLOADS):
        p.error(f"--workloads: choose from {','.join(WORKLOADS)}")
    for name in ("duration", "connections", "threads", "rounds", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if not 0 <= args.write_pct <= 100:
        p.error("--write-pct must be between 0 and 100")
    args.data = {**(SCALE_DATA if args.scale else DEFAULT_DATA)}
    args.data.update({k: v for k, v in vars(args).items() if k in DEFAULT_DATA and v is not None})
    if not 1 <= args.data["per_student"] <= args.data["courses"] or args.data["students"] < 2:
        p.error("need at least 2 students and 1 <= --per-student <= --courses")
    return args


# --- 1. The database -------------------------------------------------------------------------------


def connect(url: str, statement_timeout_s: int = 120) -> psycopg.Connection[Any]:
    """An autocommit connection whose statements are all time-limited."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    conn.execute(f"SET statement_timeout = '{statement_timeout_s}s'")
    return conn


def open_database(
    server_url: str | None, tmp: Path, cleanup: contextlib.ExitStack
) -> tuple[str, Path | None]:
    """A fresh, empty database (thrown away at exit): its URL, and the server's log file if we can read it."""
    if server_url:
        hosts = str(conninfo_to_dict(server_url).get("host") or "").split(",")
        if not all(h in ("", "localhost", "::1") or h.startswith(("/", "127.")) for h in hosts):
            raise BenchError("--database-url must point at a unix socket or a loopback address")
        name = f"bench_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"
        with connect(server_url) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

        def drop() -> None:
            with connect(server_url) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

        cleanup.callback(drop)
        return with_database(server_url, name), None

    server = import_pgserver().get_server(tmp / "pgdata", cleanup_mode="delete")
    cleanup.callback(server.cleanup)
    # Durability is not what is measured; without this the disk's fsync time dominates the POSTs.
    server.psql("ALTER SYSTEM SET synchronous_commit = off;\nSELECT pg_reload_conf();")
    server.psql("CREATE DATABASE bench;")
    return server.get_uri("bench"), tmp / "pgdata" / "log"


def import_pgserver() -> Any:
    """The embedded PostgreSQL (in the project's dev extra)."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # pgserver falls back to /tmp
    import pgserver

    return pgserver


def pgbench_path() -> str | None:
    """pgbench from the pgserver wheel (PostgreSQL 16), else from PATH."""
    with contextlib.suppress(ImportError):
        return str(Path(import_pgserver().__file__).parent / "pginstall" / "bin" / "pgbench")
    return shutil.which("pgbench")


def migrate(url: str) -> None:
    """The project's own migrations, through its own command."""
    done = subprocess.run(
        [sys.executable, "-m", "service.migrate", "apply"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode:
        raise BenchError(f"migrations failed: {(done.stderr or done.stdout).strip()}")
    log(f"migrations: {done.stdout.strip()}")
    with connect(url) as conn:
        missing = [
            table
            for table in ("students", "courses", "student_courses")
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)
        ]
    if missing:
        raise BenchError(f"the migrations did not create {', '.join(missing)}")


class Progress:
    """Seeding progress on stderr: a line when a table starts and at every further 10 % of the rows."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started, self.shown = total, 0, time.monotonic(), ("", -1)

    def add(self, rows: int, table: str) -> None:
        self.done += rows
        share, elapsed = self.done / self.total, time.monotonic() - self.started
        if (table, int(share * 10)) == self.shown:
            return
        self.shown = (table, int(share * 10))
        left = f", ~{elapsed / share - elapsed:.0f} s left" if 0.1 <= share < 1 else ""
        log(f"  seeding {table}: {self.done:,} of {self.total:,} rows ({share:.0%}), {elapsed:.0f} s{left}")


def insert_enrollments(conn: psycopg.Connection[Any], first: int, last: int, data: dict[str, int]) -> None:
    """The seeded enrollments of students first..last: student s takes K consecutive courses
    from course (s - 1) * K, wrapping (ids start at 1 in a fresh database). Deterministic."""
    conn.execute(
        """INSERT INTO student_courses (student_id, course_id, enrolled_at)
           SELECT s, 1 + ((s - 1) * %(k)s + j) %% %(m)s, %(at)s
             FROM generate_series(%(first)s::bigint, %(last)s) AS s, generate_series(0, %(k)s - 1) AS j
           ON CONFLICT DO NOTHING""",
        {"k": data["per_student"], "m": data["courses"], "at": SEEDED_AT, "first": first, "last": last},
    )


@contextlib.contextmanager
def indexes_built_after(conn: psycopg.Connection[Any], table: str) -> Iterator[None]:
    """For a bulk load: drop the table's indexes (with the constraints they back, but not the ones a
    foreign key needs), then build each again from its own definition in the catalog. Building an
    index once is far faster than maintaining it row by row (10M enrollments: ~40 s instead of ~80 s)."""
    indexes = conn.execute(
        """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname,
                  pg_get_constraintdef(c.oid)
             FROM pg_index i
             LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
            WHERE i.indrelid = %s::regclass
              AND NOT EXISTS (SELECT FROM pg_constraint fk
                               WHERE fk.contype = 'f' AND fk.conindid = i.indexrelid)""",
        (table,),
    ).fetchall()
    for index, _, constraint, _ in indexes:
        if constraint:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(constraint)
                )
            )
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
    yield
    for index, index_definition, constraint, constraint_definition in indexes:
        log(f"  building {index}")
        if constraint:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(table), sql.Identifier(constraint), sql.SQL(constraint_definition)
                )
            )
        else:
            conn.execute(index_definition)


def seed(url: str, data: dict[str, int]) -> float:
    """Fill the three tables with generate_series; answer the seconds it took."""
    students, per_student = data["students"], data["per_student"]
    started = time.monotonic()
    progress = Progress(data["courses"] + students + students * per_student)
    with connect(url, statement_timeout_s=600) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("TRUNCATE student_courses, students, courses RESTART IDENTITY CASCADE")
        if conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,):
            # The rows are consistent by construction: skip the per-row foreign-key triggers.
            conn.execute("SET session_replication_role = replica")
        conn.execute(
            """INSERT INTO courses (code, title, created_at)
               SELECT 'C' || i, 'Course ' || i, %s FROM generate_series(1, %s) AS i""",
            (SEEDED_AT, data["courses"]),
        )
        progress.add(data["courses"], "courses")
        with indexes_built_after(conn, "students"):
            for first in range(1, students + 1, STUDENTS_PER_STATEMENT):
                last = min(first + STUDENTS_PER_STATEMENT - 1, students)
                conn.execute(
                    """INSERT INTO students (name, email, created_at)
                       SELECT 'Student ' || i, 'student' || i || '@example.com', %s
                         FROM generate_series(%s::bigint, %s) AS i""",
                    (SEEDED_AT, first, last),
                )
                progress.add(last - first + 1, "students")
        for table, count in (("students", students), ("courses", data["courses"])):
            row = conn.execute(sql.SQL("SELECT min(id), max(id) FROM {}").format(sql.Identifier(table)))
            if row.fetchone() != (1, count):
                raise BenchError(f"{table}: ids are not 1..{count} after seeding a fresh database")
        with indexes_built_after(conn, "student_courses"):
            for first in range(1, students + 1, STUDENTS_PER_STATEMENT):
                last = min(first + STUDENTS_PER_STATEMENT - 1, students)
                insert_enrollments(conn, first, last, data)
                progress.add((last - first + 1) * per_student, "enrollments")
        log("  VACUUM ANALYZE")
        conn.execute("VACUUM ANALYZE students, courses, student_courses")
    return time.monotonic() - started


def reset(url: str, data: dict[str, int]) -> None:
    """Back to the seeded state: wait for requests still in flight (a server keeps working through
    its queue after the load stops), drop what a run added (seeded rows carry SEEDED_AT), restore
    any seeded row a run rewrote, VACUUM ANALYZE, and CHECKPOINT so that no checkpoint lands mid-run."""
    expected = data["students"] * data["per_student"]
    with connect(url, statement_timeout_s=600) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and conn.execute(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND backend_type = 'client backend' AND state <> 'idle'"""
        ).fetchone() != (0,):
            time.sleep(0.05)
        conn.execute("DELETE FROM student_courses WHERE enrolled_at <> %s", (SEEDED_AT,))
        if conn.execute("SELECT count(*) FROM student_courses").fetchone() != (expected,):
            insert_enrollments(conn, 1, data["students"], data)
        if (rows := conn.execute("SELECT count(*) FROM student_courses").fetchone()) != (expected,):
            raise BenchError(f"reset: {rows[0] if rows else '?'} enrollments, not the {expected} seeded ones")
        conn.execute("VACUUM ANALYZE student_courses")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def log_statements(url: str, on: bool) -> None:
    """Have Postgres log every statement of new sessions in this database (with its parameters), or not."""
    with connect(url) as conn:
        database = sql.Identifier(conn.info.dbname)
        if on:
            conn.execute(sql.SQL("ALTER DATABASE {} SET log_min_duration_statement = 0").format(database))
        else:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET log_min_duration_statement").format(database))


# --- 2. The service ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request; answers (status, decoded JSON or raw text)."""
    payload = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, payload, {"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw[:200]


class Service:
    """The server under test, in its own process group; `with` starts it and stops it with its children."""

    def __init__(self, command: list[str], env: dict[str, str], logfile: Path, start_timeout: int) -> None:
        self.command, self.logfile, self.start_timeout = command, logfile, start_timeout
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"  # load goes to this machine only
        self.env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + self.start_timeout
            while not self.healthy():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the service did not answer GET /health; its log:\n{self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def healthy(self) -> bool:
        try:
            return http(self.base, "GET", "/health")[0] == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    def rss_mib(self) -> tuple[float, int]:
        """VmRSS summed over the service's process group (uvicorn and, with WORKERS > 1, its workers):
        (MiB, number of processes)."""
        assert self.proc is not None
        total_kib, count = 0, 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pgrp = int(stat.read_text().rsplit(")", 1)[1].split()[2])
                if pgrp != self.proc.pid:
                    continue
                status = (stat.parent / "status").read_text()
            except (OSError, IndexError, ValueError):
                continue  # the process ended meanwhile
            if found := re.search(r"^VmRSS:\s+(\d+) kB", status, re.M):
                total_kib, count = total_kib + int(found[1]), count + 1
        return round(total_kib / 1024, 1), count

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left after 15 s."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group, if any


def seeded_courses(student: int, data: dict[str, int]) -> list[int]:
    """The seeded enrollments: student s takes K consecutive courses from course (s - 1) * K, wrapping."""
    k, m = data["per_student"], data["courses"]
    return [1 + ((student - 1) * k + j) % m for j in range(k)]


def next_course(student: int, data: dict[str, int]) -> int:
    """The course after the student's last seeded one (one it does not have, unless it has them all)."""
    return 1 + (student * data["per_student"]) % data["courses"]


def probe(base: str, student: int, data: dict[str, int]) -> None:
    """GET and POST on one seeded student answer as the contract says; raise BenchError otherwise."""
    seeded, extra = seeded_courses(student, data), next_course(student, data)
    for method, body, expected in (
        ("GET", None, sorted(seeded)),
        ("POST", {"course_ids": [extra, seeded[0]]}, sorted({*seeded, extra})),
    ):
        try:
            status, answer = http(base, method, f"/students/{student}/courses", body)
        except OSError as error:
            raise BenchError(f"{method} /students/{student}/courses failed: {error}") from None
        if status != 200 or not isinstance(answer, list) or [c.get("id") for c in answer] != expected:
            raise BenchError(f"{method} /students/{student}/courses answered {status}: {str(answer)[:200]}")


# --- The service's own statements, from the Postgres log: their plans, and pgbench scripts -----------


def logged_statements(text: str) -> list[tuple[str, str]]:
    """(statement, parameters) for each statement in a stretch of the Postgres log written with
    log_min_duration_statement = 0 (extended protocol "execute", simple protocol "statement")."""
    records: list[str] = []
    for line in text.splitlines():  # continuation lines of a record start with a tab
        if line.startswith("\t") and records:
            records[-1] += "\n" + line[1:]
        else:
            records.append(line)
    found: list[tuple[str, str]] = []
    previous_was_statement = False
    for record in records:
        if m := re.search(r"\] LOG:  duration: [\d.]+ ms  (?:execute [^:]*|statement): (.*)", record, re.S):
            found.append((m[1].strip(), ""))
            previous_was_statement = True
            continue
        if previous_was_statement and (m := re.search(r"\] DETAIL:  [Pp]arameters: (.*)", record, re.S)):
            found[-1] = (found[-1][0], m[1].strip())
        previous_was_statement = False
    return found


def capture_statements(service: Service, pg_log: Path, student: int, course: int) -> dict[str, Any]:
    """The statements the service runs for GET /students/{student}/courses and for a POST of
    [course] there (run a warm-up request first: connections, statement caches, type introspection)."""
    captured = {}
    for method, body in (("GET", None), ("POST", {"course_ids": [course]})):
        offset = pg_log.stat().st_size
        http(service.base, method, f"/students/{student}/courses", body)
        time.sleep(0.3)  # the pool's release (and its reset, if any) may run after the answer
        with open(pg_log, "rb") as f:
            f.seek(offset)
            captured[method] = logged_statements(f.read().decode(errors="replace"))
    return captured


def without_comments(statement: str) -> str:
    return re.sub(r"^\s*--[^\n]*\n?", "", statement, flags=re.M).strip().rstrip(";")


def parameters(logged: str) -> list[tuple[str, str]]:
    """[("1", "'2'"), ("2", "'{11}'")] from "$1 = '2', $2 = '{11}'": numbers and SQL literals."""
    return re.findall(r"\$(\d+) = (NULL|'(?:[^']|'')*')", logged)


def explain(url: str, statements: list[tuple[str, str]], planner: dict[str, str]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each data statement, with the parameters it ran with and the
    service's planner settings, in a transaction that is rolled back. Each runs twice; the
    second (warm cache) plan is kept."""
    plans = []
    with connect(url) as conn:
        for name, value in planner.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        for number, (text, logged) in enumerate(statements):
            if not re.match(r"(SELECT|WITH|INSERT|UPDATE|DELETE)\b", without_comments(text), re.I):
                continue  # BEGIN, COMMIT, a pool's reset, ...
            values = ", ".join(value for _, value in parameters(logged))
            conn.execute(f"PREPARE bench_plan_{number} AS {without_comments(text)}")
            for _ in range(2):
                with conn.transaction(force_rollback=True):
                    execute = f"EXECUTE bench_plan_{number}" + (f"({values})" if values else "")
                    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {execute}").fetchall()
            conn.execute(f"DEALLOCATE bench_plan_{number}")
            plans.append(f"{text}\n-- parameters: {logged or 'none'}\n\n" + "\n".join(r[0] for r in rows))
    return plans


def colons_escaped(statement: str) -> str:
    """pgbench -M prepared takes every :name as one of its variables, even inside a string literal
    (e.g. a to_char format 'HH24:MI:SS'): write such colons as E'\\x3a', the same string for Postgres."""

    def escape(literal: re.Match[str]) -> str:
        if ":" not in literal[1]:
            return literal[0]
        return "E'" + literal[1].replace("\\", "\\\\").replace(":", "\\x3a") + "'"

    return re.sub(r"(?<![\w'])'((?:[^']|'')*)'", escape, statement)


def pgbench_scripts(statements: dict[str, Any], student: int, course: int, folder: Path) -> dict[str, Path]:
    """pgbench scripts (get, post) that run the service's own statements, in the order it ran them:
    the logged parameter that was the student id becomes a random :sid, the array [course] three
    random course ids, any other parameter stays as logged. Empty if a request ran no statement."""
    header = ["\\set sid random(:smin, :smax)", *(f"\\set c{i} random(:cmin, :cmax)" for i in (1, 2, 3))]
    placeholders = {f"'{student}'": ":sid", f"'{{{course}}}'": "ARRAY[:c1, :c2, :c3]::bigint[]"}
    scripts = {}
    for method, workload in (("GET", "get"), ("POST", "post")):
        commands = []
        for text, logged in statements.get(method, []):
            command = colons_escaped(without_comments(text))
            for number, value in sorted(parameters(logged), key=lambda p: -int(p[0])):  # $10 before $1
                command = command.replace(f"${number}", placeholders.get(value, value))
            commands.append(command + ";")
        if not commands:
            return {}
        scripts[workload] = folder / f"{workload}.sql"
        scripts[workload].write_text("\n".join(header + commands) + "\n")
    return scripts


# --- 3. and 4. The load: wrk, pgbench, the soak ----------------------------------------------------


def ensure_wrk() -> str:
    """wrk from Debian's package, installed if missing."""
    if not shutil.which("wrk"):
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        log("wrk is missing: apt-get install wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(sudo + command, env=env, timeout=300, check=True, stdout=subprocess.DEVNULL)
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip()


def idle_share(seconds: float = 1.0) -> float:
    """Share of the machine's CPU time that was idle over the next `seconds` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    (idle0, total0), _, (idle1, total1) = sample(), time.sleep(seconds), sample()
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(limit: int, threshold: float = 0.85) -> float:
    """Wait (at most `limit` s) until other work leaves the machine mostly idle; answer the idle share."""
    deadline = time.monotonic() + limit
    idle = idle_share()
    while idle < threshold and time.monotonic() < deadline:
        idle = idle_share()
    if idle < threshold:
        log(f"  the machine is busy ({1 - idle:.0%} CPU used by others); measuring anyway")
    return round(idle, 2)


def run_wrk(
    base: str, workload: str, seconds: int, ranges: tuple[int, ...], args: argparse.Namespace
) -> dict:
    """wrk with bench/workload.lua; answers its JSON line (requests, rps, p50_ms, p99_ms, errors, valid)."""
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "5s"]
    command += ["-s", str(HERE / "workload.lua"), base]
    command += ["--", workload, *map(str, ranges), str(args.write_pct)]  # the script's arguments
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False, start_new_session=True
        )
    except subprocess.TimeoutExpired:
        return {"workload": workload, "failed": "wrk timed out", "valid": False}
    line = next((x for x in done.stdout.splitlines() if x.startswith('{"workload"')), None)
    if line is None:
        return {"workload": workload, "failed": f"wrk: {done.stderr.strip()[-200:]}", "valid": False}
    return dict(json.loads(line))


def run_pgbench(
    pgbench: str,
    url: str,
    scripts: dict[str, Path],
    workload: str,
    seconds: int,
    ranges: tuple[int, ...],
    args: argparse.Namespace,
) -> dict:
    """pgbench -M prepared with the scripts (get, post; both weighted for the mix): the SQL, no HTTP."""
    smin, smax, cmin, cmax = ranges
    files = {
        "get": [f"{scripts['get']}"],
        "post": [f"{scripts['post']}"],
        "mix": [f"{scripts['get']}@{100 - args.write_pct}", f"{scripts['post']}@{args.write_pct}"],
    }[workload]
    command = [pgbench, "-n", "-M", "prepared", "-c", str(args.connections), "-j", str(args.threads)]
    command += [f"-Dsmin={smin}", f"-Dsmax={smax}", f"-Dcmin={cmin}", f"-Dcmax={cmax}", "-T", str(seconds)]
    command += [x for script in files for x in ("-f", script)]
    # The service's planner settings, so that pgbench runs the service's plans.
    options = " ".join(f"-c {name}={value}" for name, value in args.planner.items())
    with tempfile.TemporaryDirectory(prefix="pgbench-") as logs:
        try:
            done = subprocess.run(
                [*command, "-l", f"--log-prefix={logs}/tx", url],
                env={**os.environ, "PGOPTIONS": options},
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return {"workload": workload, "failed": "pgbench timed out", "valid": False}
        # Per-transaction log lines: client, transaction, latency in µs, script, epoch s, µs.
        lines = [line.split() for f in Path(logs).iterdir() for line in f.read_text().splitlines()]
        latencies = sorted(int(x[2]) / 1000 for x in lines if len(x) > 2 and x[2].isdigit())
    tps = re.search(r"tps = ([\d.]+)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode or not tps or not latencies:
        return {"workload": workload, "failed": f"pgbench: {done.stderr.strip()[-200:]}", "valid": False}
    errors = int(failed[1]) if failed else 0
    return {
        "workload": workload,
        "requests": len(latencies),
        "rps": float(tps[1]),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "errors": errors,
        "valid": errors == 0,
    }


def soak(service: Service, seconds: int, ranges: tuple[int, ...], args: argparse.Namespace) -> dict:
    """The mix for `seconds` on a fresh service; its RSS at start, at end, and the highest of 1 s samples."""
    start_mib, processes = service.rss_mib()
    highest, stop = [start_mib], threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            highest.append(service.rss_mib()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_wrk(service.base, "mix", seconds, ranges, args)
    finally:
        stop.set()
        sampler.join(5)
    end_mib = service.rss_mib()[0]
    return {**result, "seconds": seconds, "processes": processes, "rss_mib_start": start_mib,
            "rss_mib_end": end_mib, "rss_mib_max": max(*highest, end_mib)}  # fmt: skip


def describe(record: dict) -> str:
    if "rps" not in record:
        return f"  {record['workload']}: {record['failed']}"
    rss = f", RSS {record['rss_mib']} MiB" if "rss_mib" in record else ""
    return (
        f"  {record['workload']}: {record['rps']:,.0f} req/s, p50 {record['p50_ms']:.1f} ms, "
        f"p99 {record['p99_ms']:.1f} ms, errors {record['errors']}{rss}"
    )


def measure_service(
    service: Service, url: str, ranges: tuple[int, ...], args: argparse.Namespace
) -> tuple[list[dict], str]:
    """Each workload through wrk on freshly reset data (warm-up, then measured), on one fresh service;
    answers the records and a line about its RSS (at start and after each workload)."""
    records = []
    with service:
        (start_mib, processes), after = service.rss_mib(), []
        for workload in args.workloads:
            reset(url, args.data)
            if args.warmup:
                run_wrk(service.base, workload, args.warmup, ranges, args)
            record = run_wrk(service.base, workload, args.duration, ranges, args)
            record["rss_mib"], record["processes"] = service.rss_mib()
            after.append(f"after {workload} {record['rss_mib']}")
            records.append(record)
            log(describe(record))
    return records, f"{start_mib} MiB at start ({processes} process(es)), " + ", ".join(after)


def measure_pgbench(
    pgbench: str, url: str, scripts: dict[str, Path], ranges: tuple[int, ...], args: argparse.Namespace
) -> list[dict]:
    """Each workload through pgbench on freshly reset data (warm-up, then measured)."""
    records = []
    for workload in args.workloads:
        reset(url, args.data)
        if args.warmup:
            run_pgbench(pgbench, url, scripts, workload, args.warmup, ranges, args)
        records.append(run_pgbench(pgbench, url, scripts, workload, args.duration, ranges, args))
        log(describe(records[-1]))
    return records


# --- 5. Results ----------------------------------------------------------------------------------------


def summarize(records: list[dict], workloads: list[str]) -> list[dict]:
    """Per workload and target: medians over the valid rounds (min..max of req/s), errors, and the ratio."""
    rows = []
    for workload in workloads:
        row: dict[str, Any] = {"workload": workload}
        for target in ("service", "pgbench"):
            runs = [r for r in records if r["target"] == target and r["workload"] == workload]
            good = [r for r in runs if r.get("valid")]
            row[target] = {
                "runs": len(runs),
                "valid": len(good),
                "errors": sum(r.get("errors", 0) for r in runs),
            }
            if good:
                rps = [r["rps"] for r in good]
                row[target].update(
                    rps=statistics.median(rps),
                    rps_min=min(rps),
                    rps_max=max(rps),
                    p50_ms=statistics.median(r["p50_ms"] for r in good),
                    p99_ms=statistics.median(r["p99_ms"] for r in good),
                )
            if rss := [r["rss_mib"] for r in good if "rss_mib" in r]:
                row[target]["rss_mib"] = statistics.median(rss)
        if row["service"].get("rps") and row["pgbench"].get("rps"):
            row["ratio"] = row["service"]["rps"] / row["pgbench"]["rps"]
        rows.append(row)
    return rows


def table(summary: list[dict]) -> str:
    """The summary as a markdown table (readable on a terminal too)."""

    def cells(t: dict) -> list[str]:
        if not t["runs"]:
            return ["-"] * 6
        if "rps" not in t:
            return ["-", "", "", "", f"{t['errors']}", f"{t['valid']}/{t['runs']}"]
        spread = f"{t['rps_min']:,.0f}..{t['rps_max']:,.0f}"
        return [f"{t['rps']:,.0f}", spread, f"{t['p50_ms']:.1f}", f"{t['p99_ms']:.1f}", f"{t['errors']}",
                f"{t['valid']}/{t['runs']}"]  # fmt: skip

    head = ["workload", "service req/s", "min..max", "p50 ms", "p99 ms", "errors", "valid"]
    head += ["pgbench req/s", "min..max", "p50 ms", "p99 ms", "errors", "valid", "service/pgbench", "RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in summary:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
        rss = f"{row['service']['rss_mib']:.1f}" if "rss_mib" in row["service"] else "-"
        body = [row["workload"], *cells(row["service"]), *cells(row["pgbench"]), ratio, rss]
        lines.append("| " + " | ".join(body) + " |")
    return "\n".join(lines)


def draw_chart(summary: list[dict], path: Path, title: str, labels: tuple[str, str]) -> bool:
    """Req/s per workload, service against pgbench, min..max over rounds as error bars."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (pip install -r bench/requirements.txt)")
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    width = 0.38
    for i, (target, label, color) in enumerate(
        zip(("service", "pgbench"), labels, ("#2b6cb0", "#a0aec0"), strict=True)
    ):
        stats = [row[target] for row in summary]
        values = [s.get("rps", 0) for s in stats]
        spread = [
            [v - s.get("rps_min", v) for v, s in zip(values, stats, strict=True)],
            [s.get("rps_max", v) - v for v, s in zip(values, stats, strict=True)],
        ]
        xs = [x + (i - 0.5) * width for x in range(len(summary))]
        bars = ax.bar(xs, values, width, yerr=spread, capsize=3, label=label, color=color)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
    ratios = [f"\nservice/pgbench {row['ratio']:.2f}" if "ratio" in row else "" for row in summary]
    ax.set_xticks(
        range(len(summary)), [row["workload"].upper() + r for row, r in zip(summary, ratios, strict=True)]
    )
    ax.set_ylabel("requests/s (median of rounds)")
    ax.set_title(title, fontsize=9)
    highest = max([1, *(row[t].get("rps_max", 0) for row in summary for t in ("service", "pgbench"))])
    ax.set_ylim(0, highest * 1.3)  # room for the legend
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def environment(url: str, wrk_version: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    with connect(url) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()
    versions = {}
    for package in ("litestar", "msgspec", "asyncpg", "uvicorn", "uvloop", "httptools"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu[1] if cpu else platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": postgres[0] if postgres else "?",
        "wrk": wrk_version,
        "packages": versions,
    }


def report_markdown(result: dict[str, Any], summary_table: str, rss_lines: list[str]) -> str:
    a, env = result["settings"], result["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    text = [
        f"# Benchmark {result['started']}",
        "",
        f"- Server: `{' '.join(result['server_command'])}`, WORKERS={a['workers']}, "
        f"ACCESS_LOG={str(a['access_log']).lower()}",
        f"- Data: {a['data']['students']:,} students, {a['data']['courses']:,} courses, "
        f"{a['data']['per_student']} enrollments each (seeded in {result['seed_seconds']:.1f} s)",
        f"- Load: {a['connections']} connections, {a['threads']} thread(s), {a['warmup']} s warm-up + "
        f"{a['duration']} s measured per workload, mix = {100 - a['write_pct']}/{a['write_pct']} GET/POST, "
        f"{a['rounds']} round(s), medians",
        f"- Machine: {env['cpus']} CPUs ({env['cpu']}), kernel {env['kernel']}, Python {env['python']}, "
        f"PostgreSQL {env['postgres']}, {env['wrk']}",
        f"- Packages: {packages}",
        f"- pgbench: {result['pgbench_sql']}, -M prepared, one client per connection (scripts in the .json), "
        f"planner settings {a['planner'] or 'the server defaults'} (as the service's sessions)",
        "",
        summary_table,
        "",
        *rss_lines,
    ]
    for method, statements in result["statements"].items():
        text += ["", f"## {method}: {len(statements)} statement(s) logged by Postgres for one request", ""]
        text += [f"- `{' '.join(without_comments(s).split())[:150]} ...`" for s, _ in statements]
    for method, plans in result["plans"].items():
        for plan in plans:
            text += ["", f"### {method}: EXPLAIN (ANALYZE, BUFFERS)", "", "```", plan, "```"]
    return "\n".join(text) + "\n"


# --- The run, top to bottom ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop as on Ctrl-C: the finally blocks clean up
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    started = datetime.now(UTC)
    server_command = shlex.split(args.server_cmd) if args.server_cmd else [sys.executable, "-m", "service"]
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="enrollment-bench-")))
        wrk_version = ensure_wrk()
        pgbench = None if args.no_pgbench else pgbench_path()

        # 1. A fresh database: migrated, seeded, vacuumed.
        url, pg_log = open_database(args.database_url, tmp, cleanup)
        log(f"database {url}")
        migrate(url)
        seed_seconds = seed(url, args.data)
        log(f"seeded {args.data} in {seed_seconds:.1f} s")

        # 2. Probe: right answers; the statements behind them, their plans, pgbench scripts of them.
        ranges = (1, args.data["students"], 1, args.data["courses"])
        server_env = {
            "DATABASE_URL": url,
            "WORKERS": str(args.workers),
            "ACCESS_LOG": str(args.access_log).lower(),
        }
        # The planner settings of the service's sessions, for EXPLAIN and pgbench (none for another server).
        service_settings = Settings.from_env({**os.environ, **server_env})
        args.planner = {} if args.server_cmd else planner_settings(service_settings)
        service_logs = (tmp / f"service-{n}.log" for n in itertools.count())
        student, course = 2, next_course(2, args.data)
        statements: dict[str, Any] = {}
        log_statements(url, pg_log is not None)
        with Service(server_command, server_env, next(service_logs), args.start_timeout) as service:
            probe(service.base, 1, args.data)  # also the warm-up for the capture
            if pg_log is not None:
                statements = capture_statements(service, pg_log, student, course)
        log_statements(url, False)
        reset(url, args.data)
        plans = {method: explain(url, found, args.planner) for method, found in statements.items()}
        for method, found in statements.items():
            shown = "; ".join(" ".join(without_comments(text).split())[:70] for text, _ in found)
            log(f"{method}: {len(found)} statement(s) per request: {shown}")
        scripts = pgbench_scripts(statements, student, course, tmp) if args.pgbench_sql == "service" else {}
        pgbench_sql = "the service's own statements" if scripts else "bench/get.sql and post.sql"
        scripts = scripts or {"get": HERE / "get.sql", "post": HERE / "post.sql"}
        log(f"pgbench runs {pgbench_sql}")

        # 3. Rounds: the service under wrk, pgbench on the same SQL; the order alternates.
        records: list[dict] = []
        rss_lines = []
        for round_number in range(1, args.rounds + 1):
            targets = ["service", "pgbench"] if round_number % 2 else ["pgbench", "service"]
            for target in targets:
                if target == "pgbench" and pgbench is None:
                    continue
                idle = wait_quiet(args.quiet_wait)
                log(f"round {round_number}/{args.rounds}: {target} (machine {idle:.0%} idle before)")
                if target == "service":
                    service = Service(server_command, server_env, next(service_logs), args.start_timeout)
                    found, rss_line = measure_service(service, url, ranges, args)
                    rss_lines.append(f"- RSS, round {round_number}: {rss_line}")
                else:
                    assert pgbench is not None
                    found = measure_pgbench(pgbench, url, scripts, ranges, args)
                records += [
                    {**r, "target": target, "round": round_number, "idle_before": idle} for r in found
                ]

        # 4. Soak: a long mix on a fresh service, RSS at its start and end.
        soaked: dict[str, Any] | None = None
        if args.soak:
            reset(url, args.data)
            idle = wait_quiet(args.quiet_wait)
            log(f"soak: {args.soak} s of the mix on a fresh service (machine {idle:.0%} idle before)")
            with Service(server_command, server_env, next(service_logs), args.start_timeout) as service:
                soaked = {**soak(service, args.soak, ranges, args), "idle_before": idle}
            if "rps" in soaked:
                rss_lines.append(
                    f"- Soak, {soaked['seconds']} s of the mix: {soaked['rps']:,.0f} req/s, "
                    f"errors {soaked['errors']}; RSS (MiB, {soaked['processes']} process(es)) "
                    f"start {soaked['rss_mib_start']}, end {soaked['rss_mib_end']}, "
                    f"max {soaked['rss_mib_max']}"
                )
            else:
                rss_lines.append(f"- Soak failed: {soaked['failed']}")

        # 5. Results.
        summary = summarize(records, args.workloads)
        settings = {k: v for k, v in vars(args).items() if k not in ("database_url", "results", "server_cmd")}
        result = {
            "started": started.isoformat(timespec="seconds"),
            "server_command": server_command,
            "settings": settings,
            "environment": environment(url, wrk_version),
            "seed_seconds": round(seed_seconds, 1),
            "statements": statements,
            "pgbench_sql": pgbench_sql,
            "pgbench_scripts": {name: path.read_text() for name, path in scripts.items()},
            "plans": plans,
            "records": records,
            "soak": soaked,
            "summary": summary,
        }
    summary_table = table(summary)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stamp}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (args.results / f"{stamp}.md").write_text(report_markdown(result, summary_table, rss_lines))
    data = args.data
    title = (
        f"{data['students']:,} students, {data['per_student']} courses each; {args.connections} connections; "
        f"{args.duration} s per workload; {args.rounds} round(s); {started:%Y-%m-%d}"
    )
    served_by = " ".join(Path(part).name for part in server_command)  # python -m service, python app.py, ...
    labels = (f"{served_by}, over HTTP", f"pgbench: {pgbench_sql}, no HTTP")
    charted = draw_chart(summary, args.results / "chart.png", title, labels)

    print(f"\n{title}\n\n{summary_table}\n\n" + "\n".join(rss_lines))
    print(
        f"\nresults: {args.results / stamp}.json, .md"
        + (f", {args.results / 'chart.png'}" if charted else "")
    )
    invalid = [r for r in records if not r.get("valid")] + (
        [soaked] if soaked and not soaked.get("valid") else []
    )
    if invalid:
        print(f"INVALID: {len(invalid)} run(s) had errors or failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)
