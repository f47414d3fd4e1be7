"""schemathesis fuzzes a real server process from its own /schema/openapi.json.

Every generated request must get an answer the document describes: no 5xx, a
documented status, the documented content type and a body matching its schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import create_database, drop_database
from helpers import bearer, mint_key, running_service
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service import migrate
from service.app import create_app
from service.settings import Settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The document the service publishes, built without a database (create_app connects lazily).
PUBLISHED = create_app(Settings(database_url="postgresql://localhost/unused")).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(PUBLISHED)


@pytest.fixture(scope="module")
async def fuzzed_database_url(server_url: str) -> AsyncIterator[str]:
    """A database of the fuzzer's own: it may revoke any key it finds, the suite's included."""
    url = await create_database(server_url)
    migrate.apply(url)
    yield url
    await drop_database(server_url, url)


@pytest.fixture(scope="module")
async def headers(fuzzed_database_url: str) -> dict[str, str]:
    """Every fuzzed request carries an admin key, so it reaches the handlers."""
    return bearer((await mint_key(fuzzed_database_url, "admin")).key)


@pytest.fixture(scope="module")
def base_url(fuzzed_database_url: str) -> Iterator[str]:
    with running_service(fuzzed_database_url) as (_, base):
        yield base


def test_the_served_document_is_the_one_fuzzed(base_url: str) -> None:
    assert httpx.get(f"{base_url}/schema/openapi.json").json() == PUBLISHED


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_published_contract(
    case: schemathesis.Case[Any], base_url: str, headers: dict[str, str]
) -> None:
    if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int) and case.query["wait"] > 1:
        # A long poll on a quiet feed lasts `wait` seconds (test_events.py covers it); 1 s shows the shape.
        case.query["wait"] = 1
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
