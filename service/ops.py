"""Probes for orchestrators: /health (the process) and /ready (the database too)."""

import asyncio

import msgspec
from litestar import get

from service.errors import Unavailable
from service.openapi import problem_responses
from service.params import AnyRequest, db_of

READY_TIMEOUT_S = 1.5


class Status(msgspec.Struct):
    status: str


class ShuttingDown(Unavailable):
    """SIGTERM arrived: the process still serves, but asks the load balancer to stop sending."""

    slug = "shutting-down"


@get(
    "/health",
    operation_id="Health",
    description=(
        "Answers 200 while the process serves requests. It makes no database call, so it says "
        "nothing about the database: use /ready for that."
    ),
    summary="The process is up (no database call)",
    tags=["operations"],
)
async def health() -> Status:
    return Status(status="ok")


@get(
    "/ready",
    operation_id="Ready",
    description=(
        "Answers 200 when the database answers a trivial query within 1.5 s, and a 503 problem "
        "otherwise, or once the process has been asked to shut down. Load balancers send traffic "
        "only while it is 200."
    ),
    summary="The database answers: send traffic here",
    tags=["operations"],
    responses=problem_responses(),
)
async def ready(request: AnyRequest) -> Status:
    if request.app.state["drain"].draining:
        raise ShuttingDown("the process is shutting down")
    try:
        await asyncio.wait_for(db_of(request).ping(), READY_TIMEOUT_S)
    except Exception as exc:  # any failure to answer means "not ready"
        raise Unavailable(f"the database did not answer within {READY_TIMEOUT_S} s") from exc
    return Status(status="ready")
