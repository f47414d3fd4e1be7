"""1. The database: a fresh one (embedded, or on a given server), migrated and seeded; its resets."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from service.devdb import with_database

from . import ROOT, SEEDED_AT, BenchError, log

STUDENTS_PER_STATEMENT = 50_000  # seeding goes in chunks this size so that progress can be shown


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
    import pgserver  # noqa: PLC0415 (optional, and after the filter)

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


def mint_api_key(url: str) -> str:
    """A write key for the load (the project's own command); wrk and the probes send it as
    BENCH_API_KEY."""
    done = subprocess.run(
        [sys.executable, "-m", "service.keys", "create", "--name", "bench", "--scopes", "write"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"could not mint an API key: {done.stderr.strip()[-300:]}")
    return done.stdout.splitlines()[-1]


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
