"""Request and response bodies of the enrollment routes."""

from datetime import datetime
from typing import Annotated

import msgspec

from service.params import BodyId

MAX_COURSES_PER_REQUEST = 1000


class CourseAssignment(msgspec.Struct):
    """Courses to add to the student's set (1..1000 ids, each 1..2^63-1; repeats count once)."""

    course_ids: Annotated[list[BodyId], msgspec.Meta(min_length=1, max_length=MAX_COURSES_PER_REQUEST)]


class CourseReplacement(msgspec.Struct):
    """The student's whole new set of courses (0..1000 ids, each 1..2^63-1; repeats count once)."""

    course_ids: Annotated[list[BodyId], msgspec.Meta(min_length=0, max_length=MAX_COURSES_PER_REQUEST)]


class EnrolledCourse(msgspec.Struct):
    """One row of a student's course list."""

    id: int
    code: str
    title: str
    enrolled_at: datetime
