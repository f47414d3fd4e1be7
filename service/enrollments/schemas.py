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


MAX_PAIRS_PER_REQUEST = 10_000
BULK_MAX_BODY_BYTES = 1024 * 1024  # 10,000 pairs of 19-digit ids fit; other routes keep 64 KiB


class EnrollmentPair(msgspec.Struct):
    student_id: BodyId
    course_id: BodyId


class BulkEnrollment(msgspec.Struct):
    """Pairs to enroll (1..10000; repeats and pairs already there are no-ops)."""

    enrollments: Annotated[list[EnrollmentPair], msgspec.Meta(min_length=1, max_length=MAX_PAIRS_PER_REQUEST)]


class BulkResult(msgspec.Struct):
    """`created` enrollments added; `existing` pairs that were there already (repeats count once)."""

    created: int
    existing: int


class EnrolledCourse(msgspec.Struct):
    """One row of a student's course list."""

    id: int
    code: str
    title: str
    enrolled_at: datetime
