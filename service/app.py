"""The application factory: `create_app(settings)` builds the whole service.

Everything with state (the pool, the metrics registry, the access log) is built
here, per app, so two apps in one process never share anything.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from litestar import Litestar, Router
from litestar.middleware import DefineMiddleware
from litestar.types import ControllerRouterHandler, Middleware

from service import idempotency
from service.auth import Authenticate, KeyCache, check_routes_declare_scopes
from service.courses.routes import CourseController
from service.db import DATABASE_OUTAGES, Database, check_queries, session_settings_differ
from service.drain import Drain
from service.enrollments.routes import ENROLLMENT_ROUTES
from service.errors import EXCEPTION_HANDLERS
from service.events.feed import EventFeed
from service.events.routes import list_events
from service.inputs import MAX_BODY_BYTES, JSONRequest, refuse_lenient_integers
from service.keys.routes import ApiKeyController
from service.observability import AccessLog, Metrics, RequestObserver, metrics
from service.openapi import correct_schema, openapi_config
from service.ops import health, ready
from service.reads import ReadRouting, RecordWrites
from service.settings import Settings
from service.students.routes import StudentController

RESOURCE_ROUTES: list[ControllerRouterHandler] = [
    StudentController,
    CourseController,
    *ENROLLMENT_ROUTES,
    list_events,
    ApiKeyController,
]

log = logging.getLogger("service")


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the service; settings come from the environment unless given."""
    settings = settings or Settings.from_env()
    app_metrics = Metrics()
    keys = KeyCache(app_metrics.auth, refresh_s=settings.auth_refresh_s)
    feed = EventFeed(retention_days=settings.events_retention_days)
    reads = ReadRouting(settings) if settings.database_read_url else None
    if reads is not None:
        app_metrics.registry.register(reads)
    drain = Drain(settings.shutdown_drain_s)
    app = Litestar(
        route_handlers=[
            # The resource routes need an API key, and take ids and page sizes written as integers only.
            Router(
                "/",
                route_handlers=RESOURCE_ROUTES,
                middleware=[*_authentication(settings, keys), *_read_your_writes(reads)],
                before_request=refuse_lenient_integers,
            ),
            health,
            ready,
            metrics,
        ],
        lifespan=[
            DatabaseLifespan(
                settings, app_metrics=app_metrics, keys=keys, feed=feed, reads=reads, drain=drain
            )
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JSONRequest,
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
    )
    app.state.metrics = app_metrics
    app.state.key_cache = keys
    app.state.event_feed = feed
    app.state.reads = reads  # db_of(request) asks it where a read goes (None: all on the primary)
    app.state.drain = drain
    check_routes_declare_scopes(app)
    correct_schema(app)
    _configure_observer(app, settings, app_metrics)
    return app


def _authentication(settings: Settings, keys: KeyCache) -> list[Middleware]:
    """The key check in front of every resource route, unless AUTH=off."""
    if not settings.auth:
        return []
    return [DefineMiddleware(Authenticate, keys=keys)]


def _read_your_writes(reads: ReadRouting | None) -> list[Middleware]:
    """With a read replica, each write stamps its caller's key (inside the key check, which names it)."""
    return [] if reads is None else [DefineMiddleware(RecordWrites, reads=reads)]


def _configure_observer(app: Litestar, settings: Settings, app_metrics: Metrics) -> None:
    """Request ids, metrics and the access log, outermost like Litestar's own CORS wrapper:
    it sees every request, routed or not."""
    access_log = AccessLog() if settings.access_log else None
    app.asgi_handler = RequestObserver(app.asgi_handler, metrics=app_metrics.requests, access_log=access_log)
    if access_log is not None:
        app.on_shutdown.append(access_log.flush)


class DatabaseLifespan:
    """Opens the pool (and checks every SQL file) at start-up, closes it at shutdown;
    the API key cache, the event feed's watcher and the read replica's watcher use the
    pool meanwhile, and SIGTERM is delayed by SHUTDOWN_DRAIN_S.

    The pool lives on `app.state.db`, where handlers find it with `db_of(request)`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        app_metrics: Metrics,
        keys: KeyCache,
        feed: EventFeed,
        reads: ReadRouting | None,
        drain: Drain,
    ) -> None:
        self.settings = settings
        self.metrics = app_metrics
        self.keys = keys
        self.feed = feed
        self.reads = reads
        self.drain = drain

    @asynccontextmanager
    async def __call__(self, app: Litestar) -> AsyncIterator[None]:
        db = app.state.db = await Database.connect(self.settings)
        self.metrics.pool.watch(size=db.pool.get_size, idle=db.pool.get_idle_size, waiting=lambda: db.waiting)
        if not self.settings.auth:
            log.warning("AUTH=off: every caller may read and change everything, API keys unchecked")
        try:
            await _check_queries_if_reachable(db, self.settings)
            async with AsyncExitStack() as running:
                await running.enter_async_context(self.keys.refreshing(db))
                await running.enter_async_context(self.feed.running(db))
                await running.enter_async_context(idempotency.expiring(db))
                if self.reads is not None:
                    await running.enter_async_context(self.reads.running(db))
                # Entered last, so its SIGTERM handler runs first and passes the signal on later.
                running.enter_context(self.drain.on_sigterm())
                yield
        finally:
            await db.close()


async def _check_queries_if_reachable(db: Database, settings: Settings) -> None:
    """A broken SQL file stops start-up; a database that is down does not (it is checked later).

    Also warns when the server ignored a session setting (PgBouncer drops the startup
    parameters listed in its ignore_startup_parameters: set them on the role instead).
    """
    try:
        async with db.connection() as conn:
            await check_queries(conn)
            for name, wanted, actual in await session_settings_differ(conn, settings):
                log.warning(
                    "the server's %s is %s, not %s: set it on the role (README)", name, actual, wanted
                )
    except DATABASE_OUTAGES as exc:
        log.warning("SQL files not checked: the database is unreachable (%s)", exc)
