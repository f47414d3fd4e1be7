"""Request and response bodies of /api-keys. No body but the creating answer holds a key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from service.keys.scopes import ScopeName
from service.params import STORABLE_TEXT

KeyName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=STORABLE_TEXT,
        description="1..200 chars, not blank: who or what uses the key.",
        examples=["billing-sync"],
    ),
]
Scopes = Annotated[
    list[ScopeName],
    msgspec.Meta(
        min_length=1,
        description="read < write < admin; each includes the ones before it. Repeats count once.",
    ),
]


class ApiKeyCreate(msgspec.Struct):
    name: KeyName
    scopes: Scopes
    expires_at: (
        Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339, in the future; null: never.")] | None
    ) = None


class ApiKey(msgspec.Struct):
    """An API key as listed: never the key itself."""

    id: int
    name: str
    scopes: list[ScopeName]
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewApiKey(ApiKey):
    """The answer that creates a key: the only time `key` is shown."""

    key: str
