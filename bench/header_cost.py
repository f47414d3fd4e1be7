"""What ETags and the Idempotency-Key header cost a request that does not use them, in
microseconds of CPU, measured in-process.

    .venv/bin/python bench/header_cost.py [--requests 20000] [--rounds 7]

Pairs of Litestar apps with the same route written two ways, with no socket and no
database, so the difference is the feature's whole cost on the request path:
- GET of a course list: the body as it was sent before ETags (`PrebuiltJSON`), and as
  it is sent now (the If-None-Match parameter, the hash, the ETag header);
- POST of a student without the header: answered as before (a Litestar `Response` of the
  Struct), and through `at_most_once` as the route does now.
Rounds alternate; the fastest round of each is reported (the least disturbed by
other work on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from asgi_cpu import cpu_per_request
from litestar import Litestar, Response, get, post
from litestar.params import JSONBody
from litestar.types import ASGIApp

from service.conditional import unless_current
from service.db import Statements
from service.idempotency import Answer, at_most_once
from service.params import AnyRequest
from service.responses import PrebuiltJSON
from service.students.schemas import Student, StudentCreate

# Three enrolled courses, as the benchmark's students have.
COURSES = msgspec.json.encode(
    [
        {"id": n, "code": f"C{n:05d}", "title": f"Course {n}", "enrolled_at": "2026-12-03T10:00:00.123456Z"}
        for n in (17, 523, 871)
    ]
)
STUDENT = Student(id=1, name="Ada Lovelace", email="ada@example.org", created_at=datetime.now(UTC))


@get("/students/{student_id:int}/courses")
async def list_before(request: AnyRequest, student_id: int) -> ASGIApp:
    return PrebuiltJSON(COURSES)


@get("/students/{student_id:int}/courses")
async def list_now(request: AnyRequest, student_id: int) -> ASGIApp:
    return unless_current(request, COURSES)


@post("/students")
async def create_before(data: JSONBody[StudentCreate]) -> Response[Student]:
    return Response(STUDENT, status_code=201, headers={"Location": "/students/1"})


@post("/students")
async def create_now(request: AnyRequest, data: JSONBody[StudentCreate]) -> ASGIApp:
    async def create(db: Statements) -> Answer:
        return Answer(201, msgspec.json.encode(STUDENT), location="/students/1")

    return await at_most_once(request, data, create)


def build(handler: Any) -> Litestar:
    app = Litestar([handler], openapi_config=None)
    app.state["db"] = None  # never used: the creation above does not touch it
    app.state["reads"] = None
    return app


async def serve(app: Litestar, method: str, requests: int) -> float:
    """CPU seconds per request through the app's ASGI callable."""
    if method == "GET":
        return await cpu_per_request(app, requests, headers=[(b"host", b"127.0.0.1")])
    return await cpu_per_request(
        app,
        requests,
        method="POST",
        path=lambda n: "/students",
        headers=[(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        body=b'{"name": "Ada Lovelace", "email": "ada@example.org"}',
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    pairs = {
        "GET a course list, ETag": ("GET", build(list_before), build(list_now)),
        "POST a student, no Idempotency-Key": ("POST", build(create_before), build(create_now)),
    }
    for name, (method, before, now) in pairs.items():
        await serve(before, method, 2_000)  # warm-up
        await serve(now, method, 2_000)
        seconds: dict[str, list[float]] = {"before": [], "now": []}
        for round_number in range(args.rounds):
            order = [("before", before), ("now", now)]
            for label, app in order if round_number % 2 == 0 else reversed(order):
                seconds[label].append(await serve(app, method, args.requests))
        was, is_ = (min(seconds[label]) * 1e6 for label in ("before", "now"))
        change = f"{is_ - was:+5.1f} µs ({(is_ - was) / was:+.1%})"
        print(f"{name}: {was:5.1f} µs before, {is_:5.1f} µs now, {change}")


if __name__ == "__main__":
    asyncio.run(main())
