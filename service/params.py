"""Path and query parameters shared by every resource, with the contract's bounds, and
how a handler reaches the pool."""

from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.params import Parameter

from service.db import Database
from service.reads import READ_METHODS, REPLICA_PATHS, ReadRouting

MAX_ID = 2**63 - 1

# OpenAPI renders a float for le=2**63-1; schema_extra keeps the exact integer bounds.
_ID_BOUNDS = {"minimum": 1, "maximum": MAX_ID}

# Path segments are declared `:str` so a non-integer is a named 422, not a router 404.
StudentId = Annotated[int, Parameter(ge=1, le=MAX_ID, description="Student id.", schema_extra=_ID_BOUNDS)]
CourseIdParam = Annotated[int, Parameter(ge=1, le=MAX_ID, description="Course id.", schema_extra=_ID_BOUNDS)]
ApiKeyId = Annotated[int, Parameter(ge=1, le=MAX_ID, description="API key id.", schema_extra=_ID_BOUNDS)]
Limit = Annotated[
    int,
    Parameter(ge=1, le=500, description="Page size (1..500).", schema_extra={"minimum": 1, "maximum": 500}),
]
After = Annotated[
    int | None,
    Parameter(ge=1, le=MAX_ID, description="The last id of the previous page.", schema_extra=_ID_BOUNDS),
]

# An id inside a request body.
BodyId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]

# Text PostgreSQL can store (no NUL character; msgspec already refuses lone surrogates)
# that is not blank (at least one character that is not whitespace).
STORABLE_TEXT = r"^(?=[\s\S]*\S)[^\x00]*$"
# One @, no spaces or NULs, a dot in the domain. Deliverability is the mailer's job.
EMAIL = r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"

AnyRequest = Request[Any, Any, Any]


def db_of(request: AnyRequest) -> Database:
    """The database for this request: the one place that routes reads to a replica.

    The GETs of students, courses and enrollments go to the replica when
    DATABASE_READ_URL is set and it is fresh enough (service/reads.py); everything else,
    the events feed and API keys included, to the primary's pool the lifespan opened.
    Not a Litestar dependency: resolving one on every request cost about 6 % of a GET.
    """
    state = request.app.state
    reads: ReadRouting | None = state["reads"]  # an item, not an attribute: State.__getattr__ is slow
    scope = request.scope
    if reads is not None and scope["method"] in READ_METHODS and scope["path"].startswith(REPLICA_PATHS):
        return reads.database_for(scope["state"].get("key_id"))
    db: Database = state["db"]
    return db


def actor_of(request: AnyRequest) -> int | None:
    """The id of the caller's API key, for the events it causes (None with AUTH=off)."""
    key_id: int | None = request.scope["state"].get("key_id")
    return key_id


def header_of(request: AnyRequest, name: bytes) -> str | None:
    """A request header (`name` in lower case; repeats joined by commas), read from the ASGI scope.

    Not a declared header parameter: Litestar's extraction of one cost about 10 µs per
    request (bench/header_cost.py), a twentieth of a GET. Routes document the headers
    they read with `request_headers=[RequestHeader(...)]`.
    """
    values = header_values(request, name)
    return ", ".join(values) if values else None


def header_values(request: AnyRequest, name: bytes) -> list[str]:
    """Every value of a request header, one per line it came on."""
    return [value.decode("latin-1") for key, value in request.scope["headers"] if key == name]
