"""Courses in the database."""

import asyncpg
import msgspec

from service.courses.schemas import Course, CourseCreate, CourseUpdate
from service.db import Database, QueryGroup, Transaction, sql_file
from service.errors import CapacityBelowEnrolled, CodeTaken, CourseHasStudents, CourseNotFound
from service.pagination import Page, fetch_size, page_of


class CourseQueries(QueryGroup, folder="courses"):
    create = sql_file()
    get = sql_file()
    list = sql_file()
    update = sql_file()
    lock = sql_file()
    set_capacity = sql_file()
    delete = sql_file()


async def create_course(db: Database, *, new: CourseCreate, actor: int | None) -> Course:
    """Insert a course; the unique index decides whether the code is taken."""
    try:
        course = await db.fetch_struct(
            CourseQueries.create, new.code, new.title, actor, new.capacity, into=Course
        )
    except asyncpg.UniqueViolationError:
        raise CodeTaken(new.code) from None
    assert course is not None  # INSERT ... RETURNING always answers one row
    return course


async def get_course(db: Database, *, course_id: int) -> Course:
    course = await db.fetch_struct(CourseQueries.get, course_id, into=Course)
    if course is None:
        raise CourseNotFound(course_id)
    return course


async def list_courses(db: Database, *, after: int | None, limit: int) -> Page[Course]:
    rows = await db.fetch_structs(CourseQueries.list, after or 0, fetch_size(limit), into=Course)
    return page_of(rows, limit)


async def update_course(db: Database, *, course_id: int, changes: CourseUpdate, actor: int | None) -> Course:
    code = None if changes.code is msgspec.UNSET else changes.code
    title = None if changes.title is msgspec.UNSET else changes.title
    try:
        if changes.capacity is msgspec.UNSET:
            course = await db.fetch_struct(CourseQueries.update, course_id, code, title, actor, into=Course)
        else:
            async with db.transaction() as tx:
                course = await _set_capacity(
                    tx, course_id=course_id, code=code, title=title, capacity=changes.capacity, actor=actor
                )
    except asyncpg.UniqueViolationError:
        raise CodeTaken(str(code)) from None
    if course is None:
        raise CourseNotFound(course_id)
    return course


async def _set_capacity(
    tx: Transaction,
    *,
    course_id: int,
    code: str | None,
    title: str | None,
    capacity: int | None,
    actor: int | None,
) -> Course | None:
    """Set (or lift, with None) the capacity, counting the enrollments once none are in flight."""
    if await tx.fetch_value(CourseQueries.lock, course_id) is None:
        return None
    row = await tx.fetch_record(CourseQueries.set_capacity, course_id, code, title, actor, capacity)
    assert row is not None  # the course is locked: it exists
    if row["id"] is None:
        assert capacity is not None  # lifting the limit is never refused
        raise CapacityBelowEnrolled(course_id, capacity, row["enrolled_now"])
    return Course(
        id=row["id"],
        code=row["code"],
        title=row["title"],
        capacity=row["capacity"],
        enrolled=row["enrolled"],
        created_at=row["created_at"],
    )


async def delete_course(db: Database, *, course_id: int, actor: int | None) -> None:
    """Delete a course; refused while anyone is enrolled (the foreign key decides, ON DELETE RESTRICT)."""
    try:
        deleted = await db.fetch_value(CourseQueries.delete, course_id, actor)
    except asyncpg.ForeignKeyViolationError:
        raise CourseHasStudents(course_id) from None
    if deleted is None:
        raise CourseNotFound(course_id)
