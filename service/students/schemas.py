"""Request and response bodies of /students."""

from datetime import datetime
from typing import Annotated

import msgspec

from service.params import EMAIL, STORABLE_TEXT

Name = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=200, pattern=STORABLE_TEXT, description="1..200 chars, not blank."),
]
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=EMAIL,
        description="An email address, unique case-insensitively.",
        examples=["ada@example.org"],
    ),
]


class StudentCreate(msgspec.Struct):
    name: Name
    email: Email


class StudentUpdate(msgspec.Struct):
    """Only the fields present change."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    email: Email | msgspec.UnsetType = msgspec.UNSET


class Student(msgspec.Struct):
    id: int
    name: str
    email: str
    created_at: datetime
