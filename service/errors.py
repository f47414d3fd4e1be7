"""One shape for every error: RFC 9457 problem+json, mapped here and nowhere else.

Domain code raises the small exceptions below; framework, validation and database
failures are translated by the handlers at the bottom.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from service.db import DATABASE_OUTAGES
from service.observability import request_id_of

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "1"

log = logging.getLogger("service.errors")


class FieldError(msgspec.Struct):
    field: str
    message: str
    source: str = "body"


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | msgspec.UnsetType = msgspec.UNSET
    unknown_course_ids: list[int] | msgspec.UnsetType = msgspec.UNSET
    unknown_student_ids: list[int] | msgspec.UnsetType = msgspec.UNSET
    # A 409 of an assignment: the courses it would have taken past their capacity.
    full_course_ids: list[int] | msgspec.UnsetType = msgspec.UNSET
    # The scope a 403 needed.
    required_scope: str | msgspec.UnsetType = msgspec.UNSET
    # A 410 of the feed: where to follow it from once the lists are copied again.
    resume_after: int | msgspec.UnsetType = msgspec.UNSET
    # The X-Request-ID of the request, to find its log line.
    request_id: str | msgspec.UnsetType = msgspec.UNSET


class ProblemError(Exception):
    """Base of the domain errors; each subclass is one kind of problem."""

    status: ClassVar[int]
    slug: ClassVar[str]

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem(self) -> Problem:
        return Problem(
            type=problem_type(self.slug), title=self.title(), status=self.status, detail=self.detail
        )

    @classmethod
    def title(cls) -> str:
        return HTTPStatus(cls.status).phrase

    def headers(self) -> dict[str, str] | None:
        """Headers the answer carries besides the problem."""
        return None


class NotFound(ProblemError):
    status = 404
    slug = "not-found"


class Conflict(ProblemError):
    status = 409
    slug = "conflict"


class InvalidInput(ProblemError):
    """A request value breaks the contract; `errors` names each offending field."""

    status = 422
    slug = "validation-error"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors

    def problem(self) -> Problem:
        problem = super().problem()
        problem.errors = self.errors
        return problem


# The domain's errors, one class per thing that can go wrong; repositories raise them.


class StudentNotFound(NotFound):
    def __init__(self, student_id: int) -> None:
        super().__init__(f"student {student_id} does not exist")


class CourseNotFound(NotFound):
    def __init__(self, course_id: int) -> None:
        super().__init__(f"course {course_id} does not exist")


class EnrollmentNotFound(NotFound):
    def __init__(self, student_id: int, course_id: int) -> None:
        super().__init__(f"student {student_id} is not enrolled in course {course_id}")


class ApiKeyNotFound(NotFound):
    def __init__(self, key_id: int) -> None:
        super().__init__(f"API key {key_id} does not exist")


class EmailTaken(Conflict):
    def __init__(self, email: str) -> None:
        super().__init__(f"a student with the email {email!r} already exists")


class CodeTaken(Conflict):
    def __init__(self, code: str) -> None:
        super().__init__(f"a course with the code {code!r} already exists")


class CourseHasStudents(Conflict):
    def __init__(self, course_id: int) -> None:
        super().__init__(f"course {course_id} has enrolled students; remove their enrollments first")


class PreconditionFailed(ProblemError):
    """`If-Match` named no current ETag of the resource; nothing was written."""

    status = 412
    slug = "precondition-failed"

    def __init__(self) -> None:
        # The header is not echoed: an answer never repeats what a client may have pasted by mistake.
        super().__init__("If-Match names no current ETag of this resource; nothing was written")


class IdempotencyKeyInFlight(Conflict):
    """Another request with the same Idempotency-Key is being processed."""

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still being processed; retry shortly")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": RETRY_AFTER_S}


class IdempotencyKeyReused(ProblemError):
    """The Idempotency-Key was used before with another request."""

    status = 422
    slug = "idempotency-key-reused"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with a different request; use a new key")


class CapacityBelowEnrolled(Conflict):
    slug = "capacity-below-enrolled"

    def __init__(self, course_id: int, capacity: int, enrolled: int) -> None:
        super().__init__(
            f"course {course_id} has {enrolled} students enrolled, more than a capacity of {capacity}; "
            "nothing was changed"
        )


class CoursesFull(ProblemError):
    """An assignment would take courses past their capacity; nothing was written."""

    status = 409
    slug = "courses-full"

    def __init__(self, course_ids: list[int]) -> None:
        self.course_ids = sorted(course_ids)
        super().__init__(
            f"no seat left for this in course {', '.join(map(str, self.course_ids))}; nothing was written"
        )

    def problem(self) -> Problem:
        problem = super().problem()
        problem.full_course_ids = self.course_ids
        return problem


class UnknownCourses(ProblemError):
    """An assignment names courses that do not exist; nothing was written."""

    status = 422
    slug = "unknown-courses"

    def __init__(self, course_ids: list[int]) -> None:
        self.course_ids = sorted(course_ids)
        super().__init__(f"no course has the id {', '.join(map(str, self.course_ids))}")

    def problem(self) -> Problem:
        problem = super().problem()
        problem.unknown_course_ids = self.course_ids
        return problem


class EventsRemoved(ProblemError):
    """The consumer's cursor points into events retention has removed."""

    status = 410
    slug = "events-removed"

    def __init__(self, after: int, removed_through: int, resume_after: int) -> None:
        super().__init__(
            f"events after {after} up to {removed_through} were removed (EVENTS_RETENTION_DAYS): copy the "
            f"lists again, then follow the feed with after={resume_after} (`resume_after`)"
        )
        self.resume_after = resume_after

    def problem(self) -> Problem:
        problem = super().problem()
        problem.resume_after = self.resume_after
        return problem


class Unauthorized(ProblemError):
    """No usable API key. The answer never says which of missing, malformed, unknown,
    revoked or expired it was (the metrics do)."""

    status = 401
    slug = "unauthorized"

    def __init__(self, *, key_sent: bool) -> None:
        super().__init__("this endpoint needs a valid API key: send `Authorization: Bearer <key>`")
        self.key_sent = key_sent

    def headers(self) -> dict[str, str]:
        # RFC 6750: error="invalid_token" when credentials were sent.
        error = ', error="invalid_token"' if self.key_sent else ""
        return {"WWW-Authenticate": f'Bearer realm="enrollment"{error}'}


class InsufficientScope(ProblemError):
    """A valid key whose scopes do not cover the endpoint."""

    status = 403
    slug = "insufficient-scope"

    def __init__(self, required_scope: str) -> None:
        super().__init__(f"this endpoint needs an API key with the `{required_scope}` scope")
        self.required_scope = required_scope

    def problem(self) -> Problem:
        problem = super().problem()
        problem.required_scope = self.required_scope
        return problem

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="enrollment", error="insufficient_scope", scope="{self.required_scope}"'
            )
        }


class UnknownStudentsOrCourses(ProblemError):
    """A bulk enrollment names students or courses that do not exist; nothing was written."""

    status = 422
    slug = "unknown-students-or-courses"

    def __init__(self, student_ids: list[int], course_ids: list[int]) -> None:
        self.student_ids, self.course_ids = sorted(student_ids), sorted(course_ids)
        super().__init__(
            f"{len(self.student_ids)} student id(s) and {len(self.course_ids)} course id(s) name nothing; "
            "nothing was written"
        )

    def problem(self) -> Problem:
        problem = super().problem()
        problem.unknown_student_ids, problem.unknown_course_ids = self.student_ids, self.course_ids
        return problem


class Unavailable(ProblemError):
    status = 503
    slug = "database-unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": RETRY_AFTER_S}


def problem_type(slug: str) -> str:
    return f"urn:enrollment:problem:{slug}"


def encoded_problem(problem: Problem, request: Request[Any, Any, Any] | None) -> bytes:
    """The problem+json body, tagged with the request's id."""
    if request is not None and (request_id := request_id_of(request.scope)):
        problem.request_id = request_id
    return msgspec.json.encode(problem)


def problem_response(
    problem: Problem, headers: dict[str, str] | None = None, *, request: Request[Any, Any, Any] | None = None
) -> Response[bytes]:
    """The problem as an application/problem+json answer, tagged with the request's id."""
    return Response(
        encoded_problem(problem, request),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


# msgspec ends its messages with "- at `$.course_ids[1]`"; a missing field is named inside.
_AT_PATH = re.compile(r"\s*- at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def field_error(message: str, *, default_field: str, source: str = "body") -> FieldError:
    """Turn one msgspec/Litestar message into a FieldError naming the field."""
    field = default_field
    if match := _AT_PATH.search(message):
        message = message[: match.start()]
        field = match["path"] or default_field
    if match := _MISSING.search(message):
        field = f"{field}.{match['field']}" if field != default_field else match["field"]
    return FieldError(field=field, message=message, source=source)


def invalid_body(exc: msgspec.ValidationError | msgspec.DecodeError) -> InvalidInput:
    """A body that msgspec refused, as the 422 the contract asks for."""
    if isinstance(exc, msgspec.ValidationError):
        return InvalidInput([field_error(str(exc), default_field="body")])
    return InvalidInput([FieldError(field="body", message=f"not a valid JSON document: {exc}")])


def _from_problem_error(request: Request[Any, Any, Any], exc: ProblemError) -> Response[bytes]:
    return problem_response(exc.problem(), exc.headers(), request=request)


def _from_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        source = str(getattr(item.get("source"), "value", None) or item.get("source") or "body")
        key = str(item.get("key") or "body")
        default = "body" if key == "data" else key
        errors.append(
            field_error(str(item.get("message", "invalid value")), default_field=default, source=source)
        )
    if not errors:
        errors = [FieldError(field="body", message=exc.detail)]
    return problem_response(InvalidInput(errors).problem(), request=request)


def _from_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status == 400:
        # Litestar answers 400 for bodies it cannot parse; the contract has one status for a bad body.
        invalid = InvalidInput([FieldError(field="body", message=exc.detail)])
        return problem_response(invalid.problem(), request=request)
    phrase = HTTPStatus(status).phrase
    detail = exc.detail if exc.detail and exc.detail != phrase else _DEFAULT_DETAIL.get(status, phrase)
    slug = _SLUGS.get(status, "http-error")
    problem = Problem(type=problem_type(slug), title=phrase, status=status, detail=detail)
    return problem_response(problem, dict(exc.headers) if exc.headers else None, request=request)


def _from_other_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The database being away is a 503; anything else is a bug: a 500 that shows nothing."""
    if isinstance(exc, DATABASE_OUTAGES):
        log.warning("database unavailable for %s %s: %r", request.method, request.url.path, exc)
        return _from_problem_error(request, Unavailable("the database is not answering; retry shortly"))
    log.error(
        "unhandled error in %s %s (request %s)",
        request.method,
        request.url.path,
        request_id_of(request.scope),
        exc_info=exc,
    )
    problem = Problem(
        type=problem_type("internal-error"),
        title=HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
        status=500,
        detail="the server failed to answer this request; it has been logged",
    )
    return problem_response(problem, request=request)


_SLUGS = {
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}
_DEFAULT_DETAIL = {404: "no resource at this path", 405: "this method is not allowed on this path"}

# Few entries on purpose: Litestar merges this map into a new dict on every request.
EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ProblemError: _from_problem_error,
    ValidationException: _from_validation,
    HTTPException: _from_http,
    Exception: _from_other_exception,
}
