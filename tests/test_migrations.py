"""Migrations: `make migrate` applies, is idempotent and safe in parallel; rollback undoes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys

import asyncpg
import pytest
from helpers import ROOT, mint_key
from yoyo.exceptions import LockTimeout

from service import migrate
from service.courses.repository import CourseQueries


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows if not r["tablename"].startswith(("_yoyo", "yoyo"))}


async def test_apply_creates_the_tables_and_a_second_apply_does_nothing(empty_database_url: str) -> None:
    first = migrate.apply(empty_database_url)
    assert first[0] == "0001_students_and_courses"
    assert {"students", "courses"} <= await tables(empty_database_url)
    assert migrate.apply(empty_database_url) == []


async def test_rollback_undoes_the_newest_migration_only(empty_database_url: str) -> None:
    applied = migrate.apply(empty_database_url)
    assert migrate.rollback(empty_database_url) == [applied[-1]]
    assert migrate.applied(empty_database_url) == applied[:-1]
    while migrate.rollback(empty_database_url):
        pass
    assert await tables(empty_database_url) == set()
    assert migrate.apply(empty_database_url) == applied


async def test_the_unique_indexes_are_case_insensitive(empty_database_url: str) -> None:
    migrate.apply(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("INSERT INTO students (name, email) VALUES ('A', 'a@b.io')")
        with pytest.raises(asyncpg.UniqueViolationError) as raised:
            await conn.execute("INSERT INTO students (name, email) VALUES ('B', 'A@B.IO')")
        assert raised.value.constraint_name == "students_email_key"
    finally:
        await conn.close()


async def test_two_migrate_commands_at_once_both_succeed(empty_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database_url}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.migrate", "apply", cwd=ROOT, env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0, 0]
    said = sorted(out.decode() for out, _ in outputs)
    assert said[0].startswith("applied: 0001_students_and_courses")
    assert said[1].startswith("nothing to apply")
    assert migrate.apply(empty_database_url) == []


async def test_0002_applies_and_rolls_back_on_a_database_holding_students_and_courses(
    empty_database_url: str,
) -> None:
    migrate.apply(empty_database_url)
    roll_back_to(empty_database_url, "0001_students_and_courses")
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("INSERT INTO students (name, email) VALUES ('A', 'a@b.io'), ('B', 'b@b.io')")
        await conn.execute("INSERT INTO courses (code, title) VALUES ('C1', 'One')")
        assert migrate.apply(empty_database_url)[0] == "0002_student_courses"
        roll_back_to(empty_database_url, "0002_student_courses")
        await conn.execute(
            "INSERT INTO student_courses (student_id, course_id) SELECT s.id, c.id FROM students s, courses c"
        )
        indexes = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'student_courses'")
        assert any("(course_id, student_id)" in r["indexdef"] for r in indexes)
        assert migrate.rollback(empty_database_url) == ["0002_student_courses"]
        assert await tables(empty_database_url) == {"students", "courses"}
        assert await conn.fetchval("SELECT count(*) FROM students") == 2
        assert await conn.fetchval("SELECT count(*) FROM courses") == 1
    finally:
        await conn.close()


async def test_0003_api_keys_applies_and_rolls_back_without_touching_the_data(
    empty_database_url: str,
) -> None:
    migrate.apply(empty_database_url)
    roll_back_to(empty_database_url, "0002_student_courses")
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("INSERT INTO students (name, email) VALUES ('A', 'a@b.io')")
        assert migrate.apply(empty_database_url)[0] == "0003_api_keys"
        key = await mint_key(empty_database_url, "read", "write")
        stored = await conn.fetchrow("SELECT prefix, key_hash, scopes FROM api_keys WHERE id = $1", key.id)
        assert stored is not None
        assert stored["prefix"] == key.key[:12]
        assert stored["key_hash"] == hashlib.sha256(key.key.encode()).digest()  # never the key
        assert stored["scopes"] == ["read", "write"]
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('x', $1, $2, '{read}')",
                stored["prefix"],
                stored["key_hash"],
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('x', $1, $2, '{root}')",
                stored["prefix"],
                bytes(32),
            )
        roll_back_to(empty_database_url, "0002_student_courses")
        assert "api_keys" not in await tables(empty_database_url)
        assert await conn.fetchval("SELECT count(*) FROM students") == 1
        assert migrate.apply(empty_database_url)[0] == "0003_api_keys"
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
    finally:
        await conn.close()


async def test_0004_events_applies_and_rolls_back_on_a_database_holding_data(empty_database_url: str) -> None:
    migrate.apply(empty_database_url)
    roll_back_to(empty_database_url, "0003_api_keys")
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("INSERT INTO students (name, email) VALUES ('A', 'a@b.io')")
        assert migrate.apply(empty_database_url)[0] == "0004_events"
        assert await conn.fetchval("SELECT through FROM events_removed") == 0
        assert (
            await conn.fetchval("SELECT api_time('2026-01-02 03:04:05.5+00')")
            == "2026-01-02T03:04:05.500000Z"
        )
        with pytest.raises(asyncpg.CheckViolationError):  # an enrollment event is its two ids
            await conn.execute("INSERT INTO events (type, data) VALUES ('enrollment.created', '{}')")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO events (type, data) VALUES ('student.renamed', '{}')")
        await conn.execute("INSERT INTO events (type, data) VALUES ('student.created', '{}')")
        roll_back_to(empty_database_url, "0003_api_keys")
        assert not {"events", "events_removed"} & await tables(empty_database_url)
        assert await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'api_time'") == 0
        assert await conn.fetchval("SELECT count(*) FROM students") == 1
        assert migrate.apply(empty_database_url)[0] == "0004_events"
    finally:
        await conn.close()


async def test_0005_course_capacity_applies_and_rolls_back_on_a_database_holding_enrollments(
    empty_database_url: str,
) -> None:
    migrate.apply(empty_database_url)
    roll_back_to(empty_database_url, "0004_events")
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(
            "INSERT INTO students (name, email) SELECT 'S', i || '@b.io' FROM generate_series(1, 3) i"
        )
        await conn.execute("INSERT INTO courses (code, title) VALUES ('C1', 'One'), ('C2', 'Two')")
        await conn.execute(
            "INSERT INTO student_courses (student_id, course_id)"
            " SELECT s.id, c.id FROM students s, courses c WHERE c.code = 'C1' OR s.id = 1"
        )
        assert migrate.apply(empty_database_url)[0] == "0005_course_capacity"
        # Every course is unlimited after it: no counter yet, so nothing it could miss.
        assert [tuple(r) for r in await conn.fetch("SELECT capacity, enrolled FROM courses")] == [
            (None, None)
        ] * 2
        c1 = await conn.fetchval("SELECT id FROM courses WHERE code = 'C1'")
        assert await conn.fetchval("SELECT count(*) FROM student_courses WHERE course_id = $1", c1) == 3
        with pytest.raises(asyncpg.CheckViolationError) as over:
            await conn.execute("UPDATE courses SET capacity = 2, enrolled = 3 WHERE id = $1", c1)
        assert over.value.constraint_name == "courses_within_capacity"
        with pytest.raises(asyncpg.CheckViolationError) as half:
            await conn.execute("UPDATE courses SET capacity = 5 WHERE id = $1", c1)
        assert half.value.constraint_name == "courses_counted_while_limited"
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE courses SET capacity = 100001, enrolled = 3 WHERE id = $1", c1)
        # The service's own statements on the migrated rows: enrolled counted while there is no
        # counter, then the counter filled from the rows already there when a capacity is set.
        assert [r["enrolled"] for r in await conn.fetch(CourseQueries.get.sql, c1)] == [3]
        async with conn.transaction():
            await conn.fetchval(CourseQueries.lock.sql, c1)
            refused = await conn.fetch(CourseQueries.set_capacity.sql, c1, None, None, None, 2)
            assert [(r["id"], r["enrolled_now"]) for r in refused] == [(None, 3)]
            filled = await conn.fetch(CourseQueries.set_capacity.sql, c1, None, None, None, 3)
            assert [(r["capacity"], r["enrolled"]) for r in filled] == [(3, 3)]
        stored = await conn.fetch("SELECT capacity, enrolled FROM courses WHERE id = $1", c1)
        assert [tuple(r) for r in stored] == [(3, 3)]
        data = await conn.fetchval(
            "SELECT course_json(id, code, title, capacity, enrolled, created_at) FROM courses WHERE id = $1",
            c1,
        )
        assert '"capacity" : 3' in data
        assert '"enrolled" : 3' in data
        fresh = await conn.fetch(
            "SELECT * FROM enrollments_now(ARRAY[1, 2, 3]::bigint[], ARRAY[$1, $1, 999]::bigint[])", c1
        )
        assert sorted(tuple(r) for r in fresh) == [(1, c1), (2, c1)]
        roll_back_to(empty_database_url, "0004_events")
        columns = await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'courses'::regclass AND attnum > 0"
        )
        assert not {"capacity", "enrolled"} & {r["attname"] for r in columns}
        assert "capacity" not in await conn.fetchval(
            "SELECT course_json(id, code, title, created_at)::text FROM courses WHERE id = $1", c1
        )
        assert await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'enrollments_now'") == 0
        assert await conn.fetchval("SELECT count(*) FROM student_courses") == 4
        assert migrate.apply(empty_database_url)[0] == "0005_course_capacity"
    finally:
        await conn.close()


def roll_back_to(database_url: str, migration_id: str) -> None:
    """Roll back, newest first, until `migration_id` is the newest applied."""
    while migrate.applied(database_url)[-1] != migration_id:
        migrate.rollback(database_url)


async def test_break_lock_frees_a_lock_left_by_a_killed_run(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrate, "LOCK_TIMEOUT_S", 0.5)
    conn = await asyncpg.connect(empty_database_url)
    try:
        migrate.apply(empty_database_url)  # creates yoyo's lock table
        await conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 424242)")
        with pytest.raises(LockTimeout):
            migrate.apply(empty_database_url)
        migrate.break_lock(empty_database_url)
        assert migrate.apply(empty_database_url) == []
    finally:
        await conn.close()
