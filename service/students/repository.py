"""Students in the database."""

import asyncpg
import msgspec

from service.db import QUERIES, Database
from service.errors import Conflict, NotFound
from service.pagination import Page, fetch_size, page_of
from service.students.schemas import Student, StudentCreate, StudentUpdate

_queries = QUERIES.students


def student_not_found(student_id: int) -> NotFound:
    return NotFound(f"student {student_id} does not exist")


def _email_taken(email: str) -> Conflict:
    return Conflict(f"a student with the email {email!r} already exists")


async def create_student(db: Database, *, new: StudentCreate) -> Student:
    """Insert a student; the unique index decides whether the email is taken."""
    try:
        student = await db.fetch_one(_queries.create, new.name, new.email, into=Student)
    except asyncpg.UniqueViolationError:
        raise _email_taken(new.email) from None
    assert student is not None  # INSERT ... RETURNING always answers one row
    return student


async def get_student(db: Database, *, student_id: int) -> Student:
    student = await db.fetch_one(_queries.get, student_id, into=Student)
    if student is None:
        raise student_not_found(student_id)
    return student


async def list_students(db: Database, *, after: int | None, limit: int) -> Page[Student]:
    rows = await db.fetch_all(_queries.list, after or 0, fetch_size(limit), into=Student)
    return page_of(rows, limit)


async def update_student(db: Database, *, student_id: int, changes: StudentUpdate) -> Student:
    name = None if changes.name is msgspec.UNSET else changes.name
    email = None if changes.email is msgspec.UNSET else changes.email
    try:
        student = await db.fetch_one(_queries.update, student_id, name, email, into=Student)
    except asyncpg.UniqueViolationError:
        raise _email_taken(str(email)) from None
    if student is None:
        raise student_not_found(student_id)
    return student


async def delete_student(db: Database, *, student_id: int) -> None:
    """Delete a student and, by cascade, their enrollments."""
    if await db.fetch_value(_queries.delete, student_id) is None:
        raise student_not_found(student_id)
