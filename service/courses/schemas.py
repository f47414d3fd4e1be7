"""Request and response bodies of /courses."""

from datetime import datetime
from typing import Annotated

import msgspec

from service.params import STORABLE_TEXT

Code = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        pattern=STORABLE_TEXT,
        description="1..32 chars, unique case-insensitively.",
        examples=["CS101"],
    ),
]
Title = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=200, pattern=STORABLE_TEXT, description="1..200 chars, not blank."),
]

Capacity = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=100_000,
        description="The most students the course takes (1..100000); null for no limit.",
        examples=[30],
    ),
]
# Read-only: answered, never taken from a body (a body's `enrolled` is ignored like any unknown field).
Enrolled = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        description="How many students are enrolled now (read-only).",
        # Litestar renders ge=0 as 0.0: the exact integer goes through `extra`, with readOnly.
        extra_json_schema={"extra": {"readOnly": True, "minimum": 0}},
    ),
]


class CourseCreate(msgspec.Struct):
    code: Code
    title: Title
    capacity: Capacity | None = None


class CourseUpdate(msgspec.Struct):
    """Only the fields present change."""

    code: Code | msgspec.UnsetType = msgspec.UNSET
    title: Title | msgspec.UnsetType = msgspec.UNSET
    # null lifts the limit; absent keeps it.
    capacity: Capacity | msgspec.UnsetType | None = msgspec.UNSET


class Course(msgspec.Struct):
    id: int
    code: str
    title: str
    capacity: Capacity | None
    enrolled: Enrolled
    created_at: datetime
