"""Enrollments in the database. The course lists come back as JSON built by PostgreSQL."""

import asyncpg

from service.courses.repository import course_not_found
from service.db import QUERIES, Database
from service.errors import NotFound, UnknownCourses
from service.pagination import Page, fetch_size, page_of
from service.students.repository import student_not_found
from service.students.schemas import Student

_queries = QUERIES.enrollments


async def list_courses(db: Database, *, student_id: int) -> bytes:
    """The student's enrolled courses as a JSON array, ordered by course id."""
    row = await db.fetch_row(_queries.list, student_id)
    if row is None:
        raise student_not_found(student_id)
    return str(row["courses"]).encode()


async def assign_courses(db: Database, *, student_id: int, course_ids: list[int]) -> bytes:
    """Enroll the student in every course (idempotently, all or nothing); answer the new list."""
    row = await db.fetch_row(_queries.assign, student_id, course_ids)
    assert row is not None  # the statement always answers one row
    _raise_unless_written(row, student_id)
    if not row["complete"]:
        # A concurrent request enrolled some of these courses after our snapshot: read again.
        return await list_courses(db, student_id=student_id)
    return str(row["courses"]).encode()


async def replace_courses(db: Database, *, student_id: int, course_ids: list[int]) -> bytes:
    """Make the student's courses exactly `course_ids` (all or nothing); answer the new list."""
    async with db.connection() as conn, conn.transaction():
        if await conn.fetchval(_queries.lock_student.sql, student_id) is None:
            raise student_not_found(student_id)
        row = await conn.fetchrow(_queries.replace.sql, student_id, course_ids)
        if row["unknown_course_ids"]:
            raise UnknownCourses(row["unknown_course_ids"])
    return str(row["courses"]).encode()


async def remove_course(db: Database, *, student_id: int, course_id: int) -> None:
    row = await db.fetch_row(_queries.remove, student_id, course_id)
    assert row is not None  # the statement always answers one row
    if not row["student_found"]:
        raise student_not_found(student_id)
    if not row["enrollment_found"]:
        raise NotFound(f"student {student_id} is not enrolled in course {course_id}")


async def students_of_course(db: Database, *, course_id: int, after: int | None, limit: int) -> Page[Student]:
    """A keyset page of the students enrolled in the course."""
    rows = await db.fetch_rows(_queries.students_of_course, course_id, after or 0, fetch_size(limit))
    if not rows:
        raise course_not_found(course_id)
    return page_of([Student(**row) for row in rows if row["id"] is not None], limit)


def _raise_unless_written(row: asyncpg.Record, student_id: int) -> None:
    if not row["student_found"]:
        raise student_not_found(student_id)
    if row["unknown_course_ids"]:
        raise UnknownCourses(row["unknown_course_ids"])
