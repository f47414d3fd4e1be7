"""Enrollments in the database. The course lists come back as JSON built by PostgreSQL."""

import contextlib
import logging
from typing import Any

import asyncpg

from service.conditional import require_match
from service.db import Database, Query, QueryGroup, Statements, sql_file
from service.enrollments.schemas import BulkResult, EnrollmentPair
from service.errors import (
    CourseNotFound,
    CoursesFull,
    EnrollmentNotFound,
    StudentNotFound,
    Unavailable,
    UnknownCourses,
    UnknownStudentsOrCourses,
)
from service.pagination import Page, fetch_size, page_of
from service.students.schemas import Student

STALE_RETRIES = 5

# The courses this process last found with a capacity, among those it was asked to enroll in:
# which statement a POST tries first (assign_courses). Only a hint: each statement reads the
# capacities itself, so a wrong one costs a round trip, never a seat.
_limited_courses: set[int] = set()
_LIMITED_COURSES_KEPT = 100_000  # a few MB; past it, start over

log = logging.getLogger("service.enrollments")


class EnrollmentQueries(QueryGroup, folder="enrollments"):
    list = sql_file()
    bulk = sql_file()
    assign = sql_file()
    assign_unlimited = sql_file()
    lock_student = sql_file()
    replace = sql_file()
    remove = sql_file()
    students_of_course = sql_file()


async def list_courses(db: Statements, *, student_id: int) -> bytes:
    """The student's enrolled courses as a JSON array, ordered by course id."""
    row = await db.fetch_record(EnrollmentQueries.list, student_id)
    if row is None:
        raise StudentNotFound(student_id)
    return str(row["courses"]).encode()


async def assign_courses(db: Database, *, student_id: int, course_ids: list[int], actor: int | None) -> bytes:
    """Enroll the student in every course (idempotently, all or nothing); answer the new list.

    Courses without a capacity take assign_unlimited.sql, which costs what an enrollment cost
    before capacities existed; it writes nothing when a course has one, and assign.sql, which
    admits on the counters, runs instead. Courses this process last saw with a capacity go
    straight to assign.sql: one round trip either way, once the process has seen the course.
    """
    row = None
    if _limited_courses.isdisjoint(course_ids):
        row = await _until_fresh(db, EnrollmentQueries.assign_unlimited, student_id, course_ids, actor)
        _remember_capacities(course_ids, row)
    if row is None or row["limited_course_ids"]:
        row = await _until_fresh(db, EnrollmentQueries.assign, student_id, course_ids, actor)
        _remember_capacities(course_ids, row)
    _raise_unless_written(row, student_id)
    if not row["complete"]:
        # A concurrent request enrolled some of these courses after our snapshot: read again.
        return await list_courses(db, student_id=student_id)
    return str(row["courses"]).encode()


async def replace_courses(
    db: Database, *, student_id: int, course_ids: list[int], actor: int | None, if_match: str | None
) -> bytes:
    """Make the student's courses exactly `course_ids` (all or nothing); answer the new list.

    With `if_match`, only if it names the ETag of the list as it is (under the student's lock).
    """
    for _ in range(STALE_RETRIES):
        # A new transaction for each try: the courses the last one locked are released.
        with contextlib.suppress(asyncpg.DeadlockDetectedError):  # see _until_fresh
            async with db.transaction() as tx:
                if await tx.fetch_value(EnrollmentQueries.lock_student, student_id) is None:
                    raise StudentNotFound(student_id)
                if if_match is not None:
                    require_match(if_match, await list_courses(tx, student_id=student_id))
                row = await tx.fetch_record(EnrollmentQueries.replace, student_id, course_ids, actor)
                assert row is not None  # the statement always answers one row
                if row["unknown_course_ids"]:
                    raise UnknownCourses(row["unknown_course_ids"])
                if row["full_course_ids"]:
                    raise CoursesFull(row["full_course_ids"])
            if not row["stale_course_ids"]:
                return str(row["courses"]).encode()
    raise _still_stale()


async def enroll_pairs(db: Database, *, pairs: list[EnrollmentPair], actor: int | None) -> BulkResult:
    """Enroll every pair in one statement (idempotently, all or nothing)."""
    row = await _until_fresh(
        db, EnrollmentQueries.bulk, [p.student_id for p in pairs], [p.course_id for p in pairs], actor
    )
    if row["unknown_student_ids"] or row["unknown_course_ids"]:
        raise UnknownStudentsOrCourses(row["unknown_student_ids"], row["unknown_course_ids"])
    if row["full_course_ids"]:
        raise CoursesFull(row["full_course_ids"])
    return BulkResult(created=row["created"], existing=row["requested"] - row["created"])


async def remove_course(db: Database, *, student_id: int, course_id: int, actor: int | None) -> None:
    row = await _until_fresh(db, EnrollmentQueries.remove, student_id, course_id, actor)
    if not row["student_found"]:
        raise StudentNotFound(student_id)
    if not row["enrollment_found"]:
        raise EnrollmentNotFound(student_id, course_id)


async def students_of_course(db: Database, *, course_id: int, after: int | None, limit: int) -> Page[Student]:
    """A keyset page of the students enrolled in the course."""
    rows = await db.fetch_records(
        EnrollmentQueries.students_of_course, course_id, after or 0, fetch_size(limit)
    )
    if not rows:
        raise CourseNotFound(course_id)
    return page_of([Student(**row) for row in rows if row["id"] is not None], limit)


async def _until_fresh(db: Database, query: Query, *args: Any) -> asyncpg.Record:
    """Run an enrollment statement again while it wrote nothing because a course it locked
    FOR KEY SHARE had been given a capacity after its snapshot was taken (`stale_course_ids`,
    see sql/enrollments/assign.sql): rare, and the next snapshot shows the capacity.

    Also after a deadlock, which PostgreSQL resolves by rolling back one statement whole:
    seen once in about 800 requests of tests/test_capacity.py's storm, where capacities are
    set and lifted on the courses being enrolled in, with a waiter queued between the two.
    """
    for _ in range(STALE_RETRIES):
        try:
            row = await db.fetch_record(query, *args)
        except asyncpg.DeadlockDetectedError:
            log.warning("deadlock in %s; running it again", query.name)
            continue
        assert row is not None  # the statement always answers one row
        if not row["stale_course_ids"]:
            return row
    raise _still_stale()


def _remember_capacities(requested: list[int], row: asyncpg.Record) -> None:
    """Of the requested courses, the statement found `limited_course_ids` with a capacity and the
    rest without (unless the student was missing: assign.sql then locks and reports no course)."""
    if not row["student_found"]:
        return
    limited = row["limited_course_ids"]
    _limited_courses.difference_update(requested)
    if len(_limited_courses) + len(limited) > _LIMITED_COURSES_KEPT:
        _limited_courses.clear()
    _limited_courses.update(limited)


def _still_stale() -> Unavailable:
    """Each try was overtaken by yet another capacity set on its courses (or deadlocked)."""
    return Unavailable("the capacities of these courses keep changing; retry shortly")


def _raise_unless_written(row: asyncpg.Record, student_id: int) -> None:
    if not row["student_found"]:
        raise StudentNotFound(student_id)
    if row["unknown_course_ids"]:
        raise UnknownCourses(row["unknown_course_ids"])
    if row["full_course_ids"]:
        raise CoursesFull(row["full_course_ids"])
