"""Courses in the database."""

import asyncpg
import msgspec

from service.conditional import require_match
from service.courses.schemas import Course, CourseCreate, CourseUpdate
from service.db import Database, QueryGroup, Statements, sql_file
from service.errors import CodeTaken, CourseHasStudents, CourseNotFound
from service.pagination import Page, fetch_size, page_of


class CourseQueries(QueryGroup, folder="courses"):
    create = sql_file()
    get = sql_file()
    list = sql_file()
    update = sql_file()
    delete = sql_file()
    lock = sql_file()


async def create_course(db: Statements, *, new: CourseCreate, actor: int | None) -> Course:
    """Insert a course; the unique index decides whether the code is taken."""
    try:
        course = await db.fetch_struct(CourseQueries.create, new.code, new.title, actor, into=Course)
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
    """Change the fields given; with `if_match`, only if it names the course's current ETag."""
    if if_match is None:
        return await _update(db, course_id=course_id, changes=changes, actor=actor)
    async with db.transaction() as tx:
        await _lock_matching(tx, course_id=course_id, if_match=if_match)
        return await _update(tx, course_id=course_id, changes=changes, actor=actor)


async def _update(db: Statements, *, course_id: int, changes: CourseUpdate, actor: int | None) -> Course:
    code = None if changes.code is msgspec.UNSET else changes.code
    title = None if changes.title is msgspec.UNSET else changes.title
    try:
        course = await db.fetch_struct(CourseQueries.update, course_id, code, title, actor, into=Course)
    except asyncpg.UniqueViolationError:
        raise CodeTaken(str(code)) from None
    if course is None:
        raise CourseNotFound(course_id)
    return course


async def delete_course(db: Database, *, course_id: int, actor: int | None, if_match: str | None) -> None:
    """Delete a course; refused while anyone is enrolled (the foreign key decides, ON DELETE RESTRICT)."""
    if if_match is None:
        await _delete(db, course_id=course_id, actor=actor)
        return
    async with db.transaction() as tx:
        await _lock_matching(tx, course_id=course_id, if_match=if_match)
        await _delete(tx, course_id=course_id, actor=actor)


async def _delete(db: Statements, *, course_id: int, actor: int | None) -> None:
    try:
        deleted = await db.fetch_value(CourseQueries.delete, course_id, actor)
    except asyncpg.ForeignKeyViolationError:
        raise CourseHasStudents(course_id) from None
    if deleted is None:
        raise CourseNotFound(course_id)


async def _lock_matching(tx: Statements, *, course_id: int, if_match: str) -> None:
    """Lock the course (404 when missing) and check `if_match` against the answer GET gives."""
    if await tx.fetch_value(CourseQueries.lock, course_id) is None:
        raise CourseNotFound(course_id)
    require_match(if_match, msgspec.json.encode(await get_course(tx, course_id=course_id)))
