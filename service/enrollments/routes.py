"""HTTP routes of the enrollments: a student's courses, and a course's students."""

from litestar import delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, SkipValidation
from litestar.types import ASGIApp

from service.conditional import ETAG_HEADER, IF_MATCH, IF_NONE_MATCH, if_match_of, unless_current, with_etag
from service.enrollments import repository
from service.enrollments.schemas import (
    BULK_MAX_BODY_BYTES,
    BulkEnrollment,
    BulkResult,
    CourseAssignment,
    CourseReplacement,
    EnrolledCourse,
)
from service.inputs import validated
from service.keys.scopes import Scope
from service.openapi import NOT_MODIFIED, problem_responses
from service.pagination import DEFAULT_LIMIT, Page
from service.params import After, AnyRequest, CourseIdParam, Limit, StudentId, actor_of, db_of
from service.responses import PrebuiltJSON
from service.students.schemas import Student

STUDENT_COURSES = "/students/{student_id:str}/courses"
_UNKNOWN_COURSES = (
    "Invalid input, or ids naming no course: then `unknown_course_ids` lists every one, sorted, "
    "and nothing was written (problem+json)."
)
_FULL_COURSES = (
    "Courses with a capacity that have no seat left for this: `full_course_ids` lists them, sorted, "
    "and nothing was written (problem+json)."
)
# The handlers answer JSON that PostgreSQL built; this documents its shape.
_COURSE_LIST = ResponseSpec(
    list[EnrolledCourse], description="The student's courses, ordered by id.", generate_examples=False
)


@get(
    STUDENT_COURSES,
    operation_id="ListStudentCourses",
    description=(
        "Answers the student's enrolled courses, ordered by course id (`[]` when none). Safe and idempotent."
    ),
    summary="List a student's courses",
    required_scope=Scope.READ,
    tags=["enrollments"],
    request_headers=[IF_NONE_MATCH],
    response_headers=[ETAG_HEADER],
    responses={200: _COURSE_LIST, 304: NOT_MODIFIED, **problem_responses(404, 422)},
)
async def list_student_courses(request: AnyRequest, student_id: StudentId) -> ASGIApp:
    return unless_current(request, await repository.list_courses(db_of(request), student_id=student_id))


@post(
    STUDENT_COURSES,
    operation_id="AssignCourses",
    description=(
        "Adds courses to the student's set in one statement and answers the full list after the "
        "call, ordered by course id. Idempotent: a course already taken adds no row, and repeats in"
        " `course_ids` count once. All or nothing: if any id names no course, nothing is written "
        "and the 422 lists every unknown id, sorted; if a course with a capacity has no seat left for "
        "the student (a course already taken counts once), nothing is written and the 409 lists every "
        "full one, sorted."
    ),
    summary="Enroll a student in courses (idempotent, all or nothing)",
    required_scope=Scope.WRITE,
    tags=["enrollments"],
    status_code=200,
    responses={
        200: _COURSE_LIST,
        **problem_responses(404, 409, 422, overrides={409: _FULL_COURSES, 422: _UNKNOWN_COURSES}),
    },
)
async def assign_courses(
    request: AnyRequest,
    student_id: StudentId,
    data: JSONBody[SkipValidation[CourseAssignment]],
) -> ASGIApp:
    assignment = validated(data, CourseAssignment)
    return PrebuiltJSON(
        await repository.assign_courses(
            db_of(request),
            student_id=student_id,
            course_ids=assignment.course_ids,
            actor=actor_of(request),
        )
    )


@put(
    STUDENT_COURSES,
    operation_id="ReplaceCourses",
    description=(
        "Makes the student's set exactly `course_ids` (`[]` clears it) in one transaction and "
        "answers the new list, ordered by course id. Idempotent, and all or nothing: if any id "
        "names no course, nothing changes and the 422 lists every unknown id, sorted; if a course it adds "
        "has no seat left under its capacity, nothing changes and the 409 lists every full one, sorted."
    ),
    summary="Replace a student's set of courses ([] clears it)",
    required_scope=Scope.WRITE,
    tags=["enrollments"],
    request_headers=[IF_MATCH],
    response_headers=[ETAG_HEADER],
    responses={
        200: _COURSE_LIST,
        **problem_responses(404, 409, 412, 422, overrides={409: _FULL_COURSES, 422: _UNKNOWN_COURSES}),
    },
)
async def replace_courses(
    request: AnyRequest,
    student_id: StudentId,
    data: JSONBody[SkipValidation[CourseReplacement]],
) -> ASGIApp:
    replacement = validated(data, CourseReplacement)
    return with_etag(
        await repository.replace_courses(
            db_of(request),
            student_id=student_id,
            course_ids=replacement.course_ids,
            actor=actor_of(request),
            if_match=if_match_of(request),
        )
    )


@delete(
    STUDENT_COURSES + "/{course_id:str}",
    operation_id="RemoveCourse",
    description=(
        "Takes the student out of one course. A second call is a 404: the enrollment no longer exists."
    ),
    summary="Take a student out of one course",
    required_scope=Scope.WRITE,
    tags=["enrollments"],
    responses=problem_responses(
        404, 422, overrides={404: "No such student, or the student is not enrolled in it (problem+json)."}
    ),
)
async def remove_course(request: AnyRequest, student_id: StudentId, course_id: CourseIdParam) -> None:
    await repository.remove_course(
        db_of(request), student_id=student_id, course_id=course_id, actor=actor_of(request)
    )


@get(
    "/courses/{course_id:str}/students",
    operation_id="ListCourseStudents",
    description=(
        "Answers one keyset page of the students enrolled in the course, ordered by student id "
        "ascending; `next_after` is null exactly when no student follows."
    ),
    summary="List the students enrolled in a course, a keyset page at a time",
    required_scope=Scope.READ,
    tags=["enrollments"],
    responses=problem_responses(404, 422),
)
async def list_course_students(
    request: AnyRequest, course_id: CourseIdParam, limit: Limit = DEFAULT_LIMIT, after: After = None
) -> Page[Student]:
    return await repository.students_of_course(db_of(request), course_id=course_id, after=after, limit=limit)


@post(
    "/enrollments",
    operation_id="EnrollPairs",
    description=(
        "Enrolls every (student, course) pair in one statement: 1..10000 pairs, a body of up to 1 MiB "
        "(413 beyond). Idempotent: pairs already there and repeats are no-ops, counted in `existing`. "
        "All or nothing: if any id names no student or no course, nothing is written and the 422 lists "
        "`unknown_student_ids` and `unknown_course_ids`, each complete and sorted; if the new pairs would "
        "take a course past its capacity, nothing is written and the 409 lists `full_course_ids`, sorted. "
        "Students are locked in id order, so concurrent bulk and per-student requests never deadlock."
    ),
    summary="Enroll many students in many courses at once (idempotent, all or nothing)",
    tags=["enrollments"],
    status_code=200,
    required_scope=Scope.WRITE,
    max_body_bytes=BULK_MAX_BODY_BYTES,
    responses=problem_responses(
        409,
        413,
        422,
        overrides={
            409: _FULL_COURSES,
            422: "Invalid input, or ids naming no student or course: `unknown_student_ids` and "
            "`unknown_course_ids` list them, sorted; nothing was written (problem+json).",
        },
    ),
)
async def enroll_pairs(request: AnyRequest, data: JSONBody[SkipValidation[BulkEnrollment]]) -> BulkResult:
    bulk = validated(data, BulkEnrollment)
    return await repository.enroll_pairs(db_of(request), pairs=bulk.enrollments, actor=actor_of(request))


ENROLLMENT_ROUTES = [
    enroll_pairs,
    list_student_courses,
    assign_courses,
    replace_courses,
    remove_course,
    list_course_students,
]
