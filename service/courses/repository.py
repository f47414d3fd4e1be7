"""Courses in the database."""

import asyncpg
import msgspec

from service.conditional import require_match
from service.courses.schemas import Course, CourseCreate, CourseUpdate
from service.db import Database, QueryGroup, Statements, sql_file
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


async def create_course(db: Statements, *, new: CourseCreate, actor: int | None) -> Course:
    """Insert a course; the unique index decides whether the code is taken."""
    try:
        course = await db.fetch_struct(
            CourseQueries.create, new.code, new.title, actor, new.capacity, into=Course
        )
    except asyncpg.UniqueViolationError:
        raise CodeTaken(new.code) from None
    assert course is not None  # INSERT ... RETURNING always answers one row
    return course


async def get_course(db: Statements, *, course_id: int) -> Course:
    course = await db.fetch_struct(CourseQueries.get, course_id, into=Course)
    if course is None:
        raise CourseNotFound(course_id)
    return course


async def list_courses(db: Database, *, after: int | None, limit: int) -> Page[Course]:
    rows = await db.fetch_structs(CourseQueries.list, after or 0, fetch_size(limit), into=Course)
    return page_of(rows, limit)


async def update_course(
    db: Database, *, course_id: int, changes: CourseUpdate, actor: int | None, if_match: str | None
) -> Course:
    """Change the fields given; with `if_match`, only if it names the course's current ETag.

    A change of capacity, or a conditional change, locks the course first (lock.sql);
    any other change is one statement.
    """
    code = None if changes.code is msgspec.UNSET else changes.code
    title = None if changes.title is msgspec.UNSET else changes.title
    try:
        if changes.capacity is msgspec.UNSET and if_match is None:
            course = await db.fetch_struct(CourseQueries.update, course_id, code, title, actor, into=Course)
        else:
            async with db.transaction() as tx:
                await _lock(tx, course_id=course_id, if_match=if_match)
                if changes.capacity is msgspec.UNSET:
                    course = await tx.fetch_struct(
                        CourseQueries.update, course_id, code, title, actor, into=Course
                    )
                else:
                    course = await _set_capacity(
                        tx,
                        course_id=course_id,
                        code=code,
                        title=title,
                        capacity=changes.capacity,
                        actor=actor,
                    )
    except asyncpg.UniqueViolationError:
        raise CodeTaken(str(code)) from None
    if course is None:
        raise CourseNotFound(course_id)
    return course


async def _set_capacity(
    tx: Statements,
    *,
    course_id: int,
    code: str | None,
    title: str | None,
    capacity: int | None,
    actor: int | None,
) -> Course:
    """Set (or lift, with None) the capacity, counting the enrollments once none are in flight
    (the course is locked by `_lock`)."""
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


async def delete_course(db: Database, *, course_id: int, actor: int | None, if_match: str | None) -> None:
    """Delete a course; refused while anyone is enrolled (the foreign key decides, ON DELETE RESTRICT)."""
    if if_match is None:
        await _delete(db, course_id=course_id, actor=actor)
        return
    async with db.transaction() as tx:
        await _lock(tx, course_id=course_id, if_match=if_match)
        await _delete(tx, course_id=course_id, actor=actor)


async def _delete(db: Statements, *, course_id: int, actor: int | None) -> None:
    try:
        deleted = await db.fetch_value(CourseQueries.delete, course_id, actor)
    except asyncpg.ForeignKeyViolationError:
        raise CourseHasStudents(course_id) from None
    if deleted is None:
        raise CourseNotFound(course_id)


async def _lock(tx: Statements, *, course_id: int, if_match: str | None) -> None:
    """Lock the course (404 when missing); with `if_match`, check it against the answer GET gives."""
    if await tx.fetch_value(CourseQueries.lock, course_id) is None:
        raise CourseNotFound(course_id)
    if if_match is not None:
        require_match(if_match, msgspec.json.encode(await get_course(tx, course_id=course_id)))
