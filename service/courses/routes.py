"""HTTP routes of /courses."""

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, SkipValidation
from litestar.types import ASGIApp

from service.conditional import ETAG_HEADER, IF_MATCH, IF_NONE_MATCH, if_match_of, unless_current, with_etag
from service.courses import repository
from service.courses.schemas import Course, CourseCreate, CourseUpdate
from service.db import Statements
from service.idempotency import IDEMPOTENCY_KEY, IN_FLIGHT, REPLAYED_HEADER, REUSED, Answer, at_most_once
from service.inputs import validated
from service.keys.scopes import Scope
from service.openapi import LOCATION_HEADER, NOT_MODIFIED, problem_responses
from service.pagination import DEFAULT_LIMIT, Page
from service.params import After, AnyRequest, CourseIdParam, Limit, actor_of, db_of

# Answers built with msgspec (to hash them for the ETag); this documents their shape.
_COURSE = ResponseSpec(Course, description="The course.", generate_examples=False)


class CourseController(Controller):
    path = "/courses"
    tags = ("courses",)

    @post(
        operation_id="CreateCourse",
        description=(
            "Creates a course and answers it with its `Location`. The code is unique case-"
            "insensitively: a taken one is a 409 and nothing is written. `capacity` (1..100000) limits "
            "how many students it takes; absent or null, it has no limit."
        ),
        summary="Create a course",
        required_scope=Scope.WRITE,
        request_headers=[IDEMPOTENCY_KEY],
        response_headers=[LOCATION_HEADER, REPLAYED_HEADER],
        responses={
            201: ResponseSpec(Course, description="The course created.", generate_examples=False),
            **problem_responses(
                409, 422, overrides={409: f"The code is taken (case-insensitively). {IN_FLIGHT}", 422: REUSED}
            ),
        },
    )
    async def create(self, request: AnyRequest, data: JSONBody[SkipValidation[CourseCreate]]) -> ASGIApp:
        new = validated(data, CourseCreate)  # strict: a capacity of "30" or 30.0 is a 422

        async def create_course(db: Statements) -> Answer:
            course = await repository.create_course(db, new=new, actor=actor_of(request))
            return Answer(201, msgspec.json.encode(course), location=f"/courses/{course.id}")

        return await at_most_once(request, new, create_course)

    @get(
        operation_id="ListCourses",
        description=(
            "Answers one keyset page of courses ordered by id ascending. Pass the page's `next_after` "
            "as `after` to get the next one; `next_after` is null exactly when no course follows."
        ),
        summary="List courses, a keyset page at a time",
        required_scope=Scope.READ,
        responses=problem_responses(422),
    )
    async def list(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Page[Course]:
        return await repository.list_courses(db_of(request), after=after, limit=limit)

    @get(
        "/{course_id:str}",
        operation_id="GetCourse",
        description=("Answers one course by id. Safe and idempotent."),
        summary="Get a course",
        required_scope=Scope.READ,
        request_headers=[IF_NONE_MATCH],
        response_headers=[ETAG_HEADER],
        responses={200: _COURSE, 304: NOT_MODIFIED, **problem_responses(404, 422)},
    )
    async def get(
        self,
        request: AnyRequest,
        course_id: CourseIdParam,
    ) -> ASGIApp:
        course = await repository.get_course(db_of(request), course_id=course_id)
        return unless_current(request, msgspec.json.encode(course))

    @patch(
        "/{course_id:str}",
        operation_id="UpdateCourse",
        description=(
            "Changes the fields given and keeps the others. A taken code is a 409 and nothing changes. "
            "A `capacity` below the students enrolled now is a 409 and nothing changes; `capacity: null` "
            "lifts the limit. Sending the same body again leaves the same state."
        ),
        summary="Change a course's code, title or capacity",
        required_scope=Scope.WRITE,
        request_headers=[IF_MATCH],
        response_headers=[ETAG_HEADER],
        responses={
            200: _COURSE,
            **problem_responses(
                404,
                409,
                412,
                422,
                overrides={
                    409: "The code is taken (case-insensitively), or `capacity` is below the students "
                    "enrolled now (problem+json); nothing changed."
                },
            ),
        },
    )
    async def update(
        self, request: AnyRequest, course_id: CourseIdParam, data: JSONBody[SkipValidation[CourseUpdate]]
    ) -> ASGIApp:
        course = await repository.update_course(
            db_of(request),
            course_id=course_id,
            changes=validated(data, CourseUpdate),  # strict, as for create
            actor=actor_of(request),
            if_match=if_match_of(request),
        )
        return with_etag(msgspec.json.encode(course))

    @delete(
        "/{course_id:str}",
        operation_id="DeleteCourse",
        description=(
            "Deletes a course nobody is enrolled in. While any student is enrolled the answer is a 409 "
            "and nothing is deleted: deleting a course never drops an enrollment."
        ),
        summary="Delete a course that nobody is enrolled in",
        required_scope=Scope.WRITE,
        request_headers=[IF_MATCH],
        responses=problem_responses(
            404, 409, 412, 422, overrides={409: "Students are enrolled in the course (problem+json)."}
        ),
    )
    async def delete(self, request: AnyRequest, course_id: CourseIdParam) -> None:
        await repository.delete_course(
            db_of(request), course_id=course_id, actor=actor_of(request), if_match=if_match_of(request)
        )
