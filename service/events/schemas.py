"""What GET /events answers, for the OpenAPI document: one event type per `type`, each with
its own `data`, so a generated client gets typed events. The answer itself is built from
the JSON stored with each event (repository.py)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.courses.schemas import Course
from service.students.schemas import Student


class DeletedThing(msgspec.Struct):
    id: int


class EnrollmentAdded(msgspec.Struct):
    student_id: int
    course_id: int
    enrolled_at: datetime


class EnrollmentRemoved(msgspec.Struct):
    student_id: int
    course_id: int


class _Event(msgspec.Struct, tag_field="type"):
    id: int
    at: datetime
    # The id of the API key that made the change; null when authentication is off.
    actor: int | None


class StudentCreated(_Event, tag="student.created"):
    data: Student


class StudentUpdated(_Event, tag="student.updated"):
    data: Student


class StudentDeleted(_Event, tag="student.deleted"):
    data: DeletedThing


class CourseCreated(_Event, tag="course.created"):
    data: Course


class CourseUpdated(_Event, tag="course.updated"):
    data: Course


class CourseDeleted(_Event, tag="course.deleted"):
    data: DeletedThing


class EnrollmentCreated(_Event, tag="enrollment.created"):
    data: EnrollmentAdded


class EnrollmentDeleted(_Event, tag="enrollment.deleted"):
    data: EnrollmentRemoved


Event = (
    StudentCreated
    | StudentUpdated
    | StudentDeleted
    | CourseCreated
    | CourseUpdated
    | CourseDeleted
    | EnrollmentCreated
    | EnrollmentDeleted
)


class EventPage(msgspec.Struct):
    """A page of the feed, ordered by id; `next_after` is null when no settled event follows."""

    items: list[Event]
    next_after: int | None
