"""Safe retries of creations: the `Idempotency-Key` header (API.md "Retries").

A request with a key runs in one transaction that first takes a lock named by the
caller and the key (a second request with them meanwhile gets a 409), then either
replays the answer stored for that key or makes the write and stores its answer
beside it. The write and the stored answer commit together, so no crash can leave
one without the other; a 5xx rolls both back, so a retry is processed afresh.
A request without the header runs the write directly, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from hashlib import blake2b
from typing import NamedTuple

import msgspec
from litestar.datastructures import ResponseHeader
from litestar.openapi.spec import OpenAPIType, Schema

from service.db import Database, QueryGroup, Statements, Transaction, sql_file
from service.errors import (
    PROBLEM_JSON,
    FieldError,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InvalidInput,
    ProblemError,
    encoded_problem,
)
from service.openapi import RequestHeader
from service.params import AnyRequest, actor_of, db_of, header_values
from service.responses import JSON, PrebuiltJSON

log = logging.getLogger("service.idempotency")

EXPIRE_EVERY_S = 60.0
EXPIRE_BATCH = 5000

IDEMPOTENCY_KEY = RequestHeader(
    "Idempotency-Key",
    "1..255 printable ASCII characters, chosen by the client per operation. For 24 hours, the same key "
    "with the same body replays the first answer (with `Idempotent-Replayed: true`) and writes nothing; "
    "with another body it is a 422; while the first request runs, a 409.",
    Schema(type=OpenAPIType.STRING, min_length=1, max_length=255, pattern=r"^[\x20-\x7e]+$"),
)
_WELL_FORMED_KEY = re.compile(r"[\x20-\x7e]{1,255}")
REPLAYED_HEADER = ResponseHeader(
    name="Idempotent-Replayed",
    documentation_only=True,
    description="`true` when this is the stored first answer to the request's `Idempotency-Key`.",
)
IN_FLIGHT = (
    "A request with the same `Idempotency-Key` is still being processed; retry shortly (problem+json)."
)
REUSED = "Invalid input, or an `Idempotency-Key` already used with another body (problem+json)."


class IdempotencyQueries(QueryGroup, folder="idempotency"):
    claim = sql_file()
    find = sql_file()
    record = sql_file()
    expire = sql_file()


class Answer(NamedTuple):
    """What a creation answers, in the form it is stored and replayed in."""

    status: int
    body: bytes
    location: str | None = None

    def response(self, *, replayed: bool = False) -> PrebuiltJSON:
        headers = [] if self.location is None else [(b"location", self.location.encode())]
        if replayed:
            headers.append((b"idempotent-replayed", b"true"))
        media_type = PROBLEM_JSON.encode() if self.status >= 400 else JSON
        return PrebuiltJSON(self.body, self.status, headers, media_type)


Creation = Callable[[Statements], Awaitable[Answer]]


async def at_most_once(request: AnyRequest, body: msgspec.Struct, create: Creation) -> PrebuiltJSON:
    """Run `create`, or, for a key already used by this caller with this body, answer as the first time."""
    key = idempotency_key_of(request)
    if key is None:
        return (await create(db_of(request))).response()
    caller = actor_of(request) or 0
    fingerprint = _fingerprint(request, body)
    async with db_of(request).transaction() as tx:
        if not await tx.fetch_value(IdempotencyQueries.claim, caller, key):
            raise IdempotencyKeyInFlight
        stored = await tx.fetch_record(IdempotencyQueries.find, caller, key)
        if stored is not None:
            if stored["request"] != fingerprint:
                raise IdempotencyKeyReused
            return Answer(stored["status"], stored["body"], stored["location"]).response(replayed=True)
        answer = await _answer_of(request, tx, create)
        await tx.fetch_value(
            IdempotencyQueries.record, caller, key, fingerprint, answer.status, answer.body, answer.location
        )
    return answer.response()


def idempotency_key_of(request: AnyRequest) -> str | None:
    """The request's Idempotency-Key; a malformed one is a 422 before anything is done."""
    keys = header_values(request, b"idempotency-key")
    if not keys:
        return None
    if len(keys) > 1 or not _WELL_FORMED_KEY.fullmatch(keys[0]):
        message = "must be one value of 1..255 printable ASCII characters"
        raise InvalidInput([FieldError(field="Idempotency-Key", message=message, source="header")])
    return keys[0]


async def _answer_of(request: AnyRequest, tx: Transaction, create: Creation) -> Answer:
    """The creation's answer; a refusal (a 4xx) is an answer too, to be replayed like a success."""
    try:
        async with tx.savepoint():
            return await create(tx)
    except ProblemError as exc:
        if exc.status >= 500:
            raise
        return Answer(exc.status, encoded_problem(exc.problem(), request))


def _fingerprint(request: AnyRequest, body: msgspec.Struct) -> bytes:
    """What "the same request" means: the same method, path and body (as validated, so
    key order, spacing and unknown members do not count)."""
    target = f"{request.method} {request.scope['path']}\n".encode()
    return blake2b(target + msgspec.json.encode(body), digest_size=16).digest()


async def expire(db: Database) -> int:
    """Remove the keys older than 24 hours, a batch at a time; answers how many."""
    total = 0
    while (removed := await db.fetch_value(IdempotencyQueries.expire, EXPIRE_BATCH)) > 0:
        total += removed
        await asyncio.sleep(0.01)  # let requests in between batches
    return total


@contextlib.asynccontextmanager
async def expiring(db: Database) -> AsyncIterator[None]:
    """Remove expired keys every minute while inside."""

    async def expire_forever() -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            try:
                if removed := await expire(db):
                    log.info("removed %d idempotency keys older than 24 hours", removed)
            except Exception as exc:  # try again next time, whatever it was
                log.warning("expired idempotency keys not removed: %r", exc)

    task = asyncio.create_task(expire_forever(), name="idempotency-key-expiry")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
