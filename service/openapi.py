"""The OpenAPI document at /schema: its set-up, the problem responses every operation
documents, and the corrections to what Litestar generates."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
from litestar import Litestar, Response, Router
from litestar.datastructures import ResponseHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Contact,
    Discriminator,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Parameter,
    Reference,
    Schema,
    SecurityScheme,
    Tag,
)
from litestar.routes import HTTPRoute

from service import __version__
from service.auth import REQUIRED_SCOPE
from service.errors import PROBLEM_JSON, Problem, problem_response, problem_type
from service.keys.scopes import Scope
from service.params import MAX_ID

_DESCRIPTIONS = {
    404: "Not found (problem+json).",
    409: "Conflict with existing data (problem+json).",
    413: "The body is larger than this route accepts (problem+json).",
    410: "Gone: retention removed events after `after`; copy the lists again (problem+json).",
    412: "`If-Match` names no current ETag of the resource; nothing was written (problem+json).",
    422: "Invalid input; `errors` names each offending field (problem+json).",
    503: "The database is unavailable; retry after `Retry-After` seconds (problem+json).",
}


# The route keyword that lists the request headers a handler reads itself (`header_of`).
REQUEST_HEADERS = "request_headers"


class RequestHeader(NamedTuple):
    """An optional request header a route reads, for its OpenAPI entry."""

    name: str
    description: str
    schema: Schema = Schema(type=OpenAPIType.STRING)


LOCATION_HEADER = ResponseHeader(
    name="Location", documentation_only=True, description="The path of the resource created."
)
NOT_MODIFIED = ResponseSpec(
    None,
    description="Not modified: `If-None-Match` names the current ETag (no body).",
    generate_examples=False,
)


def problem_responses(*statuses: int, overrides: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems an operation can answer with (503 always)."""
    descriptions = {**_DESCRIPTIONS, **(overrides or {})}
    return {
        status: ResponseSpec(
            Problem, description=descriptions[status], media_type=PROBLEM_JSON, generate_examples=False
        )
        for status in (*statuses, 503)
    }


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Enrollment API",
        version=__version__,
        description="Students, courses and which student takes which course.",
        contact=Contact(name="Enrollment service maintainers"),
        tags=[
            Tag(name="students", description="People who take courses."),
            Tag(name="courses", description="What can be taken."),
            Tag(name="enrollments", description="Which student takes which course."),
            Tag(name="events", description="The change feed: every write, in order, gap-free."),
            Tag(name="api-keys", description="Who may call the API, with which scopes (the `admin` scope)."),
            Tag(name="operations", description="Probes for load balancers and orchestrators."),
        ],
        path="/schema",
        render_plugins=[SwaggerRenderPlugin(path="/swagger")],
        openapi_router=Router(
            "/schema", route_handlers=[], include_in_schema=False, after_request=_problem_for_html_404
        ),
        create_examples=False,
    )


def correct_schema(app: Litestar) -> None:
    """Fix what Litestar gets wrong for this contract, once, when the app is built."""
    schema = app.openapi_schema
    _drop_framework_400s(schema)
    _document_body_id_bounds(schema, _body_structs(app))
    _document_api_keys(app, schema)
    _document_request_headers(app, schema)
    _document_response_headers(app, schema)
    _name_the_discriminators(schema)


async def _problem_for_html_404(response: Response[Any]) -> Response[Any]:
    """Litestar answers unknown /schema/* paths with an HTML page; keep every error problem+json."""
    if response.status_code == 404:
        problem = Problem(
            type=problem_type("not-found"), title="Not Found", status=404, detail="no document at this path"
        )
        return problem_response(problem)
    return response


def _drop_framework_400s(schema: OpenAPI) -> None:
    """Litestar documents a 400 in its own error shape; bad input here is always a 422 problem."""
    for path_item in (schema.paths or {}).values():
        for method in ("get", "put", "post", "patch", "delete"):
            operation = getattr(path_item, method)
            if operation is not None and operation.responses:
                operation.responses.pop("400", None)


def _body_structs(app: Litestar) -> set[type[msgspec.Struct]]:
    """The Struct of every request body the app declares."""
    structs = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            data = handler.parsed_fn_signature.parameters.get("data")
            body = None if data is None else data.annotation
            if isinstance(body, type) and issubclass(body, msgspec.Struct):
                structs.add(body)
    return structs


def _document_body_id_bounds(schema: OpenAPI, structs: set[type[msgspec.Struct]]) -> None:
    """Litestar drops the constraints of list items: restore them on every list of ids in a body.

    A list of ids is found by its type (a list of integers bounded 1..2^63-1), so renaming
    a Struct or a field cannot break start-up.
    """
    components = schema.components.schemas or {}
    for struct in structs:
        component = components.get(struct.__name__)
        if component is None or not component.properties:
            continue
        for field in msgspec.structs.fields(struct):
            prop = component.properties.get(field.encode_name)
            items = prop.items if isinstance(prop, Schema) else None
            if _is_id_list(field.type) and isinstance(items, Schema):
                items.minimum, items.maximum = 1, MAX_ID


def _is_id_list(annotation: Any) -> bool:
    info = msgspec.inspect.type_info(annotation)
    return (
        isinstance(info, msgspec.inspect.ListType)
        and isinstance(info.item_type, msgspec.inspect.IntType)
        and (info.item_type.ge, info.item_type.le) == (1, MAX_ID)
    )


def _name_the_discriminators(schema: OpenAPI) -> None:
    """A oneOf of tagged Structs (the events, each with a constant `type`) gets its discriminator,
    so generated clients pick the variant by `type`."""
    components = schema.components.schemas or {}
    for component in components.values():
        for prop in (component.properties or {}).values():
            union = prop.items if isinstance(prop, Schema) and isinstance(prop.items, Schema) else prop
            if not isinstance(union, Schema) or not union.one_of:
                continue
            mapping = {}
            for variant in union.one_of:
                target = (
                    components.get(variant.ref.rsplit("/", 1)[-1]) if isinstance(variant, Reference) else None
                )
                tag = (target.properties or {}).get("type") if target is not None else None
                if not isinstance(variant, Reference) or not isinstance(tag, Schema) or tag.const is None:
                    break
                mapping[str(tag.const)] = variant.ref
            else:
                union.discriminator = Discriminator(property_name="type", mapping=mapping)


def _document_request_headers(app: Litestar, schema: OpenAPI) -> None:
    """The headers a route reads itself (`request_headers=[...]`), as optional header parameters."""
    for route in app.routes:
        path_item = (schema.paths or {}).get(route.path_format)
        if not isinstance(route, HTTPRoute) or path_item is None:
            continue
        for method, (handler, _) in route.route_handler_map.items():
            operation = getattr(path_item, method.lower(), None)
            headers: list[RequestHeader] = handler.opt.get(REQUEST_HEADERS, [])
            if operation is None or not headers:
                continue
            operation.parameters = [
                *(operation.parameters or []),
                *(
                    Parameter(
                        name=header.name,
                        param_in="header",
                        required=False,
                        description=header.description,
                        schema=header.schema,
                    )
                    for header in headers
                ),
            ]


def _document_response_headers(app: Litestar, schema: OpenAPI) -> None:
    """A route's `response_headers` (ETag, Location, ...) on its success answer.

    Litestar puts them on the answer it generates, which a `responses` entry for the same
    status replaces (the routes that answer prebuilt JSON document their body that way).
    """
    for route in app.routes:
        path_item = (schema.paths or {}).get(route.path_format)
        if not isinstance(route, HTTPRoute) or path_item is None:
            continue
        for method, (handler, _) in route.route_handler_map.items():
            operation = getattr(path_item, method.lower(), None)
            success = (operation.responses or {}).get(str(handler.status_code)) if operation else None
            if not isinstance(success, OpenAPIResponse):
                continue
            headers = dict(success.headers or {})
            for header in handler.resolve_response_headers():
                headers.setdefault(
                    header.name,
                    OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description=header.description),
                )
            success.headers = headers or None
            not_modified = (operation.responses or {}).get("304") if operation else None
            if isinstance(not_modified, OpenAPIResponse) and "ETag" in headers:
                not_modified.headers = {"ETag": headers["ETag"]}


_SECURITY_SCHEME = "apiKey"


def _document_api_keys(app: Litestar, schema: OpenAPI) -> None:
    """Each operation behind a key gets the bearer requirement, its scope, and its 401 and 403.

    Read from the routes' own `required_scope`, so the document cannot disagree with the check.
    """
    components = schema.components
    components.security_schemes = {
        _SECURITY_SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="enr_ and 43 base62 characters",
            description="An API key: `Authorization: Bearer <key>`. Keys come from `make api-key` "
            "or `POST /api-keys`.",
        )
    }
    for route in app.routes:
        path_item = (schema.paths or {}).get(route.path_format)
        if not isinstance(route, HTTPRoute) or path_item is None:
            continue
        for method, (handler, _) in route.route_handler_map.items():
            required: Scope | None = handler.opt.get(REQUIRED_SCOPE)
            operation = getattr(path_item, method.lower(), None)
            if required is None or operation is None:
                continue
            operation.security = [{_SECURITY_SCHEME: []}]
            operation.description = f"{operation.description} Needs the `{required.label}` scope."
            operation.responses = {**(operation.responses or {}), **_auth_responses(required)}


def _auth_responses(required: Scope) -> dict[str, OpenAPIResponse | Reference]:
    problem = {PROBLEM_JSON: OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))}
    challenge: dict[str, OpenAPIHeader | Reference] = {
        "WWW-Authenticate": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING), description="The Bearer challenge (RFC 6750)."
        )
    }
    return {
        "401": OpenAPIResponse(
            description="No API key, or one that is unknown, revoked or expired (problem+json).",
            content=problem,
            headers=challenge,
        ),
        "403": OpenAPIResponse(
            description=(
                f"The key is valid but lacks the `{required.label}` scope; `required_scope` names it "
                "(problem+json)."
            ),
            content=problem,
            headers=challenge,
        ),
    }
