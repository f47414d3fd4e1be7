"""HTTP routes of /courses."""

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody, SkipValidation

from service.courses import repository
from service.courses.schemas import Course, CourseCreate, CourseUpdate
from service.inputs import validated
from service.keys.scopes import Scope
from service.openapi import problem_responses
from service.pagination import DEFAULT_LIMIT, Page
from service.params import After, AnyRequest, CourseIdParam, Limit, actor_of, db_of


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
        responses=problem_responses(409, 422, overrides={409: "The code is taken (case-insensitively)."}),
    )
    async def create(
        self, request: AnyRequest, data: JSONBody[SkipValidation[CourseCreate]]
    ) -> Response[Course]:
        new = validated(data, CourseCreate)  # strict: a capacity of "30" or 30.0 is a 422
        course = await repository.create_course(db_of(request), new=new, actor=actor_of(request))
        return Response(course, status_code=201, headers={"Location": f"/courses/{course.id}"})

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
        responses=problem_responses(404, 422),
    )
    async def get(self, request: AnyRequest, course_id: CourseIdParam) -> Course:
        return await repository.get_course(db_of(request), course_id=course_id)

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
        responses=problem_responses(
            404,
            409,
            422,
            overrides={
                409: "The code is taken (case-insensitively), or `capacity` is below the students "
                "enrolled now (problem+json); nothing changed."
            },
        ),
    )
    async def update(
        self, request: AnyRequest, course_id: CourseIdParam, data: JSONBody[SkipValidation[CourseUpdate]]
    ) -> Course:
        changes = validated(data, CourseUpdate)  # strict, as for create
        return await repository.update_course(
            db_of(request), course_id=course_id, changes=changes, actor=actor_of(request)
        )

    @delete(
        "/{course_id:str}",
        operation_id="DeleteCourse",
        description=(
            "Deletes a course nobody is enrolled in. While any student is enrolled the answer is a 409 "
            "and nothing is deleted: deleting a course never drops an enrollment."
        ),
        summary="Delete a course that nobody is enrolled in",
        required_scope=Scope.WRITE,
        responses=problem_responses(
            404, 409, 422, overrides={409: "Students are enrolled in the course (problem+json)."}
        ),
    )
    async def delete(self, request: AnyRequest, course_id: CourseIdParam) -> None:
        await repository.delete_course(db_of(request), course_id=course_id, actor=actor_of(request))
