"""Keyset pages: `?limit=N&after=ID`, answered as `{"items": [...], "next_after": ID | null}`."""

from typing import Generic, Protocol, TypeVar

import msgspec

DEFAULT_LIMIT = 50


class HasId(Protocol):
    @property
    def id(self) -> int: ...


ItemT = TypeVar("ItemT", bound=HasId)


class Page(msgspec.Struct, Generic[ItemT]):
    items: list[ItemT]
    next_after: int | None


def fetch_size(limit: int) -> int:
    """Rows to ask for: one beyond the page tells whether another page follows."""
    return limit + 1


def page_of(rows: list[ItemT], limit: int) -> Page[ItemT]:
    """Cut the extra row off and point `next_after` at the last item when more follow."""
    if len(rows) > limit:
        items = rows[:limit]
        return Page(items=items, next_after=items[-1].id)
    return Page(items=rows, next_after=None)
