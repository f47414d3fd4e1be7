"""The factory: what each app owns, and the plumbing every route shares."""

from __future__ import annotations

import re
from typing import Annotated

import httpx
from helpers import assert_problem, in_process
from litestar import Litestar, Router, get
from litestar.params import Parameter

from service.app import create_app
from service.errors import EXCEPTION_HANDLERS
from service.inputs import refuse_lenient_integers
from service.settings import Settings


def _counted(metrics_text: str, route: str) -> float:
    pattern = (
        rf'enrollment_http_requests_total\{{method="GET",route="{re.escape(route)}",status="200"\}} (\S+)'
    )
    match = re.search(pattern, metrics_text)
    return float(match.group(1)) if match else 0.0


async def test_two_apps_in_one_process_count_their_own_requests_and_pools(settings: Settings) -> None:
    first = create_app(Settings(database_url=settings.database_url, pool_min_size=1, pool_max_size=2))
    second = create_app(Settings(database_url=settings.database_url, pool_min_size=3, pool_max_size=3))
    async with in_process(first) as one, in_process(second) as two:
        for _ in range(3):
            assert (await one.get("/health")).status_code == 200
        first_metrics, second_metrics = (await one.get("/metrics")).text, (await two.get("/metrics")).text
    assert _counted(first_metrics, "/health") == 3
    assert _counted(second_metrics, "/health") == 0
    assert re.search(r"^enrollment_db_pool_connections 1\.0$", first_metrics, re.MULTILINE)
    assert re.search(r"^enrollment_db_pool_connections 3\.0$", second_metrics, re.MULTILINE)
    assert "process_resident_memory_bytes" in second_metrics


Wait = Annotated[int, Parameter(ge=0, le=30)]


@get("/things/{thing_id:str}")
async def a_route_with_a_new_integer_query_parameter(
    thing_id: Annotated[int, Parameter(ge=1)],
    wait: Wait = 0,
    page: Annotated[int | None, Parameter(query="p")] = None,
    name: Annotated[str, Parameter()] = "",
) -> dict[str, int | None]:
    return {"thing_id": thing_id, "wait": wait, "page": page}


async def test_a_new_integer_query_parameter_is_strict_without_being_listed_anywhere() -> None:
    app = Litestar(
        [
            Router(
                "/",
                route_handlers=[a_route_with_a_new_integer_query_parameter],
                before_request=refuse_lenient_integers,
            )
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    async with in_process(app) as client:
        answer = await client.get("/things/1?wait=3&p=2&name=7.0")
        assert answer.json() == {"thing_id": 1, "wait": 3, "page": 2}
        refused = assert_problem(await client.get("/things/1?wait=3.0&p=2e0"), 422)
        assert [error["field"] for error in refused["errors"]] == ["wait", "p"]
        assert {error["source"] for error in refused["errors"]} == {"query"}
        refused = assert_problem(await client.get("/things/1e0?wait=1"), 422)
        assert refused["errors"] == [
            {"field": "thing_id", "message": "Expected an integer", "source": "path"}
        ]


async def test_integer_query_parameters_of_the_real_routes_are_strict(client: httpx.AsyncClient) -> None:
    for path in ("/students?limit=5.0", "/courses?after=1e3", "/courses/1/students?limit=true"):
        problem = assert_problem(await client.get(path), 422)
        assert problem["errors"][0]["source"] == "query", path
