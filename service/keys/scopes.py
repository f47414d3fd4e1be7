"""Scopes nest: `read` < `write` < `admin`; a key may do what its widest scope allows."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Literal

ScopeName = Literal["read", "write", "admin"]


class Scope(IntEnum):
    READ = 1  # every GET of students, courses, enrollments and events
    WRITE = 2  # also their POST, PUT, PATCH and DELETE
    ADMIN = 3  # also /api-keys

    @property
    def label(self) -> ScopeName:
        label: ScopeName = self.name.lower()  # type: ignore[assignment]  # the three names above
        return label


def widest(names: Iterable[str]) -> Scope:
    return max(Scope[name.upper()] for name in names)


def normalized(names: Iterable[ScopeName]) -> list[ScopeName]:
    """Each scope once, narrowest first (how keys store and show them)."""
    return [scope.label for scope in sorted({Scope[name.upper()] for name in names})]
