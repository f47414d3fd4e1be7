"""The application factory: `create_app(settings)` builds the whole service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Response, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPI, Schema, Tag
from litestar.types import ControllerRouterHandler

from service import __version__
from service.courses.routes import CourseController
from service.db import Database, check_queries
from service.enrollments.routes import ENROLLMENT_ROUTES
from service.errors import DATABASE_OUTAGES, EXCEPTION_HANDLERS, Problem, problem_response, problem_type
from service.inputs import MAX_BODY_BYTES, JSONRequest, refuse_lenient_integers
from service.observability import AccessLog, MetricsController, RequestObserver, watch_pool
from service.ops import health, ready
from service.params import MAX_ID
from service.settings import Settings
from service.students.routes import StudentController

RESOURCE_ROUTES: list[ControllerRouterHandler] = [StudentController, CourseController, *ENROLLMENT_ROUTES]

log = logging.getLogger("service")


class DatabaseLifespan:
    """Opens the pool (and checks every SQL file) at start-up, closes it at shutdown.

    The pool lives on `app.state.db`, where handlers find it with `db_of(request)`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @asynccontextmanager
    async def __call__(self, app: Litestar) -> AsyncIterator[None]:
        db = app.state.db = await Database.connect(self.settings)
        watch_pool(size=db.pool.get_size, idle=db.pool.get_idle_size, waiting=lambda: db.waiting)
        try:
            await _check_queries_if_reachable(db)
            yield
        finally:
            await db.close()


async def _check_queries_if_reachable(db: Database) -> None:
    """A broken SQL file stops start-up; a database that is down does not (it is checked later)."""
    try:
        async with db.connection() as conn:
            await check_queries(conn)
    except DATABASE_OUTAGES as exc:
        log.warning("SQL files not checked: the database is unreachable (%s)", exc)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the service; settings come from the environment unless given."""
    settings = settings or Settings.from_env()
    app = Litestar(
        route_handlers=[
            # The resource routes take ids and page sizes, written as integers only.
            Router("/", route_handlers=RESOURCE_ROUTES, before_request=refuse_lenient_integers),
            health,
            ready,
            MetricsController,
        ],
        lifespan=[DatabaseLifespan(settings)],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JSONRequest,
        openapi_config=_openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
    )
    _drop_framework_400s(app.openapi_schema)
    _document_course_id_bounds(app.openapi_schema)
    # Outermost, like Litestar's own CORS wrapper: it sees every request, routed or not.
    access_log = AccessLog() if settings.access_log else None
    app.asgi_handler = RequestObserver(app.asgi_handler, access_log=access_log)
    if access_log is not None:
        app.on_shutdown.append(access_log.flush)
    return app


def _openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Enrollment API",
        version=__version__,
        description="Students, courses and which student takes which course.",
        tags=[
            Tag(name="students", description="People who take courses."),
            Tag(name="courses", description="What can be taken."),
            Tag(name="enrollments", description="Which student takes which course."),
            Tag(name="operations", description="Probes for load balancers and orchestrators."),
        ],
        path="/schema",
        render_plugins=[SwaggerRenderPlugin(path="/swagger")],
        openapi_router=Router(
            "/schema", route_handlers=[], include_in_schema=False, after_request=_problem_for_html_404
        ),
        create_examples=False,
    )


async def _problem_for_html_404(response: Response[Any]) -> Response[Any]:
    """Litestar answers unknown /schema/* paths with an HTML page; keep every error problem+json."""
    if response.status_code == 404:
        problem = Problem(
            type=problem_type("not-found"), title="Not Found", status=404, detail="no document at this path"
        )
        return problem_response(problem)
    return response


def _document_course_id_bounds(schema: OpenAPI) -> None:
    """Litestar drops the constraints of list items; the ids in a body are 1..2^63-1."""
    components = schema.components.schemas or {}
    for name in ("CourseAssignment", "CourseReplacement"):
        course_ids = (components[name].properties or {})["course_ids"]
        assert isinstance(course_ids, Schema)
        assert isinstance(course_ids.items, Schema)
        course_ids.items.minimum, course_ids.items.maximum = 1, MAX_ID


def _drop_framework_400s(schema: OpenAPI) -> None:
    """Litestar documents a 400 in its own error shape; bad input here is always a 422 problem."""
    for path_item in (schema.paths or {}).values():
        for method in ("get", "put", "post", "patch", "delete"):
            operation = getattr(path_item, method)
            if operation is not None and operation.responses:
                operation.responses.pop("400", None)
