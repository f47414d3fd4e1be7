"""GET /events: the change feed, gap-free, with long polling."""

from typing import Annotated

from litestar import get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.types import ASGIApp

from service.events import repository
from service.events.feed import EventFeed
from service.events.schemas import EventPage
from service.keys.scopes import Scope
from service.openapi import problem_responses
from service.params import MAX_ID, AnyRequest, db_of
from service.responses import PrebuiltJSON

EventsAfter = Annotated[
    int,
    Parameter(
        ge=0,
        le=MAX_ID,
        description="The id of the last event the consumer has (0 to start from the oldest).",
        schema_extra={"minimum": 0, "maximum": MAX_ID},
    ),
]
EventsLimit = Annotated[
    int,
    Parameter(
        ge=1, le=1000, description="Page size (1..1000).", schema_extra={"minimum": 1, "maximum": 1000}
    ),
]
Wait = Annotated[
    int,
    Parameter(
        ge=0,
        le=30,
        description="Seconds to wait for an event when none follows `after` (0..30).",
        schema_extra={"minimum": 0, "maximum": 30},
    ),
]


def feed_of(request: AnyRequest) -> EventFeed:
    feed: EventFeed = request.app.state["event_feed"]
    return feed


@get(
    "/events",
    operation_id="ListEvents",
    description=(
        "Answers the events after `after`, ordered by id. No gaps, no repeats: an event appears only "
        "once every event with a smaller id is visible, so a consumer that always asks again with the "
        "last id it received sees every event exactly once, in order. With `wait`, a request that finds "
        "nothing waits up to that many seconds and answers as soon as an event is visible (within 1 s "
        "of its commit). A 410 means retention removed events after `after`: copy the lists again."
    ),
    summary="Follow the change feed (long polling with `wait`)",
    tags=["events"],
    required_scope=Scope.READ,
    responses={
        200: ResponseSpec(EventPage, description="A page of events.", generate_examples=False),
        **problem_responses(410, 422),
    },
)
async def list_events(
    request: AnyRequest, after: EventsAfter = 0, limit: EventsLimit = 100, wait: Wait = 0
) -> ASGIApp:
    feed, db = feed_of(request), db_of(request)
    horizon = await feed.fresh_horizon()
    body = await repository.page(db, after=after, horizon=horizon, limit=limit)
    if wait and body.startswith(b'{"items":[]'):
        await feed.wait_beyond(after, wait)
        body = await repository.page(db, after=after, horizon=feed.horizon, limit=limit)
    return PrebuiltJSON(body)
