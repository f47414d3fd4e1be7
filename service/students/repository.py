"""Students in the database."""

import contextlib

import asyncpg
import msgspec

from service.conditional import require_match
from service.db import Database, QueryGroup, Statements, sql_file
from service.errors import EmailTaken, StudentNotFound, Unavailable
from service.pagination import Page, fetch_size, page_of
from service.students.schemas import Student, StudentCreate, StudentUpdate

STALE_RETRIES = 5


class StudentQueries(QueryGroup, folder="students"):
    create = sql_file()
    get = sql_file()
    list = sql_file()
    update = sql_file()
    lock = sql_file()
    delete = sql_file()


async def create_student(db: Statements, *, new: StudentCreate, actor: int | None) -> Student:
    """Insert a student; the unique index decides whether the email is taken."""
    try:
        student = await db.fetch_struct(StudentQueries.create, new.name, new.email, actor, into=Student)
    except asyncpg.UniqueViolationError:
        raise EmailTaken(new.email) from None
    assert student is not None  # INSERT ... RETURNING always answers one row
    return student


async def get_student(db: Statements, *, student_id: int) -> Student:
    student = await db.fetch_struct(StudentQueries.get, student_id, into=Student)
    if student is None:
        raise StudentNotFound(student_id)
    return student


async def list_students(db: Database, *, after: int | None, limit: int) -> Page[Student]:
    rows = await db.fetch_structs(StudentQueries.list, after or 0, fetch_size(limit), into=Student)
    return page_of(rows, limit)


async def update_student(
    db: Database, *, student_id: int, changes: StudentUpdate, actor: int | None, if_match: str | None
) -> Student:
    """Change the fields given; with `if_match`, only if it names the student's current ETag."""
    if if_match is None:
        return await _update(db, student_id=student_id, changes=changes, actor=actor)
    async with db.transaction() as tx:
        await _lock_matching(tx, student_id=student_id, if_match=if_match)
        return await _update(tx, student_id=student_id, changes=changes, actor=actor)


async def _update(db: Statements, *, student_id: int, changes: StudentUpdate, actor: int | None) -> Student:
    name = None if changes.name is msgspec.UNSET else changes.name
    email = None if changes.email is msgspec.UNSET else changes.email
    try:
        student = await db.fetch_struct(StudentQueries.update, student_id, name, email, actor, into=Student)
    except asyncpg.UniqueViolationError:
        raise EmailTaken(str(email)) from None
    if student is None:
        raise StudentNotFound(student_id)
    return student


async def delete_student(db: Database, *, student_id: int, actor: int | None, if_match: str | None) -> None:
    """Delete a student and their enrollments (each recorded as an event)."""
    for _ in range(STALE_RETRIES):  # as enrollment writes do (service/enrollments/repository.py)
        with contextlib.suppress(asyncpg.DeadlockDetectedError):  # ... after a deadlock too
            async with db.transaction() as tx:
                await _lock_matching(tx, student_id=student_id, if_match=if_match)
                row = await tx.fetch_record(StudentQueries.delete, student_id, actor)
            assert row is not None  # the statement always answers one row
            if not row["stale_course_ids"]:
                return
    raise Unavailable("the capacities of this student's courses keep changing; retry shortly")


async def _lock_matching(tx: Statements, *, student_id: int, if_match: str | None) -> None:
    """Lock the student (404 when missing); with `if_match`, check it against the answer GET gives."""
    if await tx.fetch_value(StudentQueries.lock, student_id) is None:
        raise StudentNotFound(student_id)
    if if_match is not None:
        require_match(if_match, msgspec.json.encode(await get_student(tx, student_id=student_id)))
