"""Courses in the database."""

import asyncpg
import msgspec

from service.courses.schemas import Course, CourseCreate, CourseUpdate
from service.db import QUERIES, Database
from service.errors import Conflict, NotFound
from service.pagination import Page, fetch_size, page_of

_queries = QUERIES.courses


def course_not_found(course_id: int) -> NotFound:
    return NotFound(f"course {course_id} does not exist")


def _code_taken(code: str) -> Conflict:
    return Conflict(f"a course with the code {code!r} already exists")


async def create_course(db: Database, *, new: CourseCreate) -> Course:
    """Insert a course; the unique index decides whether the code is taken."""
    try:
        course = await db.fetch_one(_queries.create, new.code, new.title, into=Course)
    except asyncpg.UniqueViolationError:
        raise _code_taken(new.code) from None
    assert course is not None  # INSERT ... RETURNING always answers one row
    return course


async def get_course(db: Database, *, course_id: int) -> Course:
    course = await db.fetch_one(_queries.get, course_id, into=Course)
    if course is None:
        raise course_not_found(course_id)
    return course


async def list_courses(db: Database, *, after: int | None, limit: int) -> Page[Course]:
    rows = await db.fetch_all(_queries.list, after or 0, fetch_size(limit), into=Course)
    return page_of(rows, limit)


async def update_course(db: Database, *, course_id: int, changes: CourseUpdate) -> Course:
    code = None if changes.code is msgspec.UNSET else changes.code
    title = None if changes.title is msgspec.UNSET else changes.title
    try:
        course = await db.fetch_one(_queries.update, course_id, code, title, into=Course)
    except asyncpg.UniqueViolationError:
        raise _code_taken(str(code)) from None
    if course is None:
        raise course_not_found(course_id)
    return course


async def delete_course(db: Database, *, course_id: int) -> None:
    """Delete a course; refused while anyone is enrolled (the foreign key decides, ON DELETE RESTRICT)."""
    try:
        deleted = await db.fetch_value(_queries.delete, course_id)
    except asyncpg.ForeignKeyViolationError:
        raise Conflict(f"course {course_id} has enrolled students; remove their enrollments first") from None
    if deleted is None:
        raise course_not_found(course_id)
