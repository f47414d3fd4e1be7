"""HTTP routes of /students."""

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.types import ASGIApp

from service.conditional import ETAG_HEADER, IF_MATCH, IF_NONE_MATCH, if_match_of, unless_current, with_etag
from service.db import Statements
from service.idempotency import IDEMPOTENCY_KEY, IN_FLIGHT, REPLAYED_HEADER, REUSED, Answer, at_most_once
from service.keys.scopes import Scope
from service.openapi import LOCATION_HEADER, NOT_MODIFIED, problem_responses
from service.pagination import DEFAULT_LIMIT, Page
from service.params import After, AnyRequest, Limit, StudentId, actor_of, db_of
from service.students import repository
from service.students.schemas import Student, StudentCreate, StudentUpdate

# Answers built with msgspec (to hash them for the ETag); this documents their shape.
_STUDENT = ResponseSpec(Student, description="The student.", generate_examples=False)


class StudentController(Controller):
    path = "/students"
    tags = ("students",)

    @post(
        operation_id="CreateStudent",
        description=(
            "Creates a student and answers it with its `Location`. The email is unique case-"
            "insensitively (stored as given): a taken one is a 409 and nothing is written."
        ),
        summary="Create a student",
        required_scope=Scope.WRITE,
        request_headers=[IDEMPOTENCY_KEY],
        response_headers=[LOCATION_HEADER, REPLAYED_HEADER],
        responses={
            201: ResponseSpec(Student, description="The student created.", generate_examples=False),
            **problem_responses(
                409,
                422,
                overrides={409: f"The email is taken (case-insensitively). {IN_FLIGHT}", 422: REUSED},
            ),
        },
    )
    async def create(self, request: AnyRequest, data: JSONBody[StudentCreate]) -> ASGIApp:
        async def create_student(db: Statements) -> Answer:
            student = await repository.create_student(db, new=data, actor=actor_of(request))
            return Answer(201, msgspec.json.encode(student), location=f"/students/{student.id}")

        return await at_most_once(request, data, create_student)

    @get(
        operation_id="ListStudents",
        description=(
            "Answers one keyset page of students ordered by id ascending. Pass the page's `next_after` "
            "as `after` to get the next one; `next_after` is null exactly when no student follows."
        ),
        summary="List students, a keyset page at a time",
        required_scope=Scope.READ,
        responses=problem_responses(422),
    )
    async def list(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Page[Student]:
        return await repository.list_students(db_of(request), after=after, limit=limit)

    @get(
        "/{student_id:str}",
        operation_id="GetStudent",
        description=("Answers one student by id. Safe and idempotent."),
        summary="Get a student",
        required_scope=Scope.READ,
        request_headers=[IF_NONE_MATCH],
        response_headers=[ETAG_HEADER],
        responses={200: _STUDENT, 304: NOT_MODIFIED, **problem_responses(404, 422)},
    )
    async def get(
        self,
        request: AnyRequest,
        student_id: StudentId,
    ) -> ASGIApp:
        student = await repository.get_student(db_of(request), student_id=student_id)
        return unless_current(request, msgspec.json.encode(student))

    @patch(
        "/{student_id:str}",
        operation_id="UpdateStudent",
        description=(
            "Changes the fields given and keeps the others. A taken email is a 409 and nothing changes."
            " Sending the same body again leaves the same state."
        ),
        summary="Change a student's name or email",
        required_scope=Scope.WRITE,
        request_headers=[IF_MATCH],
        response_headers=[ETAG_HEADER],
        responses={
            200: _STUDENT,
            **problem_responses(
                404, 409, 412, 422, overrides={409: "The email is taken (case-insensitively)."}
            ),
        },
    )
    async def update(
        self,
        request: AnyRequest,
        student_id: StudentId,
        data: JSONBody[StudentUpdate],
    ) -> ASGIApp:
        student = await repository.update_student(
            db_of(request),
            student_id=student_id,
            changes=data,
            actor=actor_of(request),
            if_match=if_match_of(request),
        )
        return with_etag(msgspec.json.encode(student))

    @delete(
        "/{student_id:str}",
        operation_id="DeleteStudent",
        description=(
            "Deletes a student and, in the same transaction, every enrollment of theirs. A student "
            "already gone is a 404."
        ),
        summary="Delete a student and their enrollments",
        required_scope=Scope.WRITE,
        request_headers=[IF_MATCH],
        responses=problem_responses(404, 412, 422),
    )
    async def delete(self, request: AnyRequest, student_id: StudentId) -> None:
        await repository.delete_student(
            db_of(request), student_id=student_id, actor=actor_of(request), if_match=if_match_of(request)
        )
