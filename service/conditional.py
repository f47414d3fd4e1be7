"""Conditional requests (RFC 9110 §13): strong ETags, `If-None-Match` and `If-Match`.

An ETag is a hash of the answer's exact bytes, so it changes whenever the body would,
whoever changed it (a course's new title changes the ETag of its students' course
lists), and no version column has to be kept in step. A write under `If-Match` locks
the row, renders its current answer the way GET does, compares, and only then writes,
all in one transaction: the check and the write cannot be split by another writer.
"""

from __future__ import annotations

from hashlib import blake2b

from litestar.datastructures import ResponseHeader

from service.errors import PreconditionFailed
from service.openapi import RequestHeader
from service.params import AnyRequest, header_of
from service.responses import NotModified, PrebuiltJSON

IF_NONE_MATCH = RequestHeader(
    "If-None-Match",
    "ETags of copies the client holds (or `*`): a 304 with no body when one of them is current.",
)
IF_MATCH = RequestHeader(
    "If-Match",
    "Write only if the resource's current ETag is one of these (`*`: any existing one); otherwise a 412 "
    "and nothing is written.",
)
ETAG_HEADER = ResponseHeader(
    name="ETag",
    documentation_only=True,
    description="A strong validator of this answer: send it back in `If-None-Match` or `If-Match`.",
)


def etag_of(body: bytes) -> str:
    """The strong ETag of an answer's exact bytes (BLAKE2b: about half a microsecond for a body)."""
    return f'"{blake2b(body, digest_size=16).hexdigest()}"'


def with_etag(body: bytes) -> PrebuiltJSON:
    """A 200 JSON answer that carries its ETag."""
    return PrebuiltJSON(body, headers=[(b"etag", etag_of(body).encode())])


def if_match_of(request: AnyRequest) -> str | None:
    return header_of(request, b"if-match")


def unless_current(request: AnyRequest, body: bytes) -> PrebuiltJSON | NotModified:
    """The answer with its ETag, or a 304 when `If-None-Match` names that ETag (weak comparison)."""
    etag = etag_of(body)
    if_none_match = header_of(request, b"if-none-match")
    if if_none_match is not None and _names(if_none_match, etag, weak=True):
        return NotModified(etag)
    return PrebuiltJSON(body, headers=[(b"etag", etag.encode())])


def require_match(if_match: str, current: bytes) -> None:
    """Raise PreconditionFailed unless `If-Match` names the ETag of `current` (strong comparison)."""
    if not _names(if_match, etag_of(current), weak=False):
        raise PreconditionFailed


def _names(header: str, etag: str, *, weak: bool) -> bool:
    """Whether a list of entity tags (RFC 9110 §8.8.3) names `etag`; `*` names any.

    Weak comparison ignores a `W/` prefix; strong comparison never matches a weak tag
    (and every ETag here is strong).
    """
    for listed in header.split(","):
        tag = listed.strip()
        if tag in ("*", etag) or (weak and tag.startswith("W/") and tag[2:] == etag):
            return True
    return False
