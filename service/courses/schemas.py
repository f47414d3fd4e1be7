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


class CourseCreate(msgspec.Struct):
    code: Code
    title: Title


class CourseUpdate(msgspec.Struct):
    """Only the fields present change."""

    code: Code | msgspec.UnsetType = msgspec.UNSET
    title: Title | msgspec.UnsetType = msgspec.UNSET


class Course(msgspec.Struct):
    id: int
    code: str
    title: str
    created_at: datetime
