"""HTTP routes of /courses."""

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import JSONBody

from service.courses import repository
from service.courses.schemas import Course, CourseCreate, CourseUpdate
from service.openapi import problem_responses
from service.pagination import DEFAULT_LIMIT, Page
from service.params import After, AnyRequest, CourseIdParam, Limit, db_of


class CourseController(Controller):
    path = "/courses"
    tags = ("courses",)

    @post(
        operation_id="CreateCourse",
        summary="Create a course",
        responses=problem_responses(409, 422, overrides={409: "The code is taken (case-insensitively)."}),
    )
    async def create(self, request: AnyRequest, data: JSONBody[CourseCreate]) -> Response[Course]:
        course = await repository.create_course(db_of(request), new=data)
        return Response(course, status_code=201, headers={"Location": f"/courses/{course.id}"})

    @get(
        operation_id="ListCourses",
        summary="List courses, a keyset page at a time",
        responses=problem_responses(422),
    )
    async def list(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Page[Course]:
        return await repository.list_courses(db_of(request), after=after, limit=limit)

    @get(
        "/{course_id:str}",
        operation_id="GetCourse",
        summary="Get a course",
        responses=problem_responses(404, 422),
    )
    async def get(self, request: AnyRequest, course_id: CourseIdParam) -> Course:
        return await repository.get_course(db_of(request), course_id=course_id)

    @patch(
        "/{course_id:str}",
        operation_id="UpdateCourse",
        summary="Change a course's code or title",
        responses=problem_responses(
            404, 409, 422, overrides={409: "The code is taken (case-insensitively)."}
        ),
    )
    async def update(
        self, request: AnyRequest, course_id: CourseIdParam, data: JSONBody[CourseUpdate]
    ) -> Course:
        return await repository.update_course(db_of(request), course_id=course_id, changes=data)

    @delete(
        "/{course_id:str}",
        operation_id="DeleteCourse",
        summary="Delete a course that nobody is enrolled in",
        responses=problem_responses(
            404, 409, 422, overrides={409: "Students are enrolled in the course (problem+json)."}
        ),
    )
    async def delete(self, request: AnyRequest, course_id: CourseIdParam) -> None:
        await repository.delete_course(db_of(request), course_id=course_id)
