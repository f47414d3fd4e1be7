"""Where Litestar is more lenient than the contract, before any handler runs.

- Bodies: only JSON media types are read (415 otherwise), and a body too deeply
  nested or with invalid UTF-8 inside a string is a bad body (422), not a crash.
- Integers in paths and queries: Litestar converts "7.0" and "1e3" to 7 and 1000;
  the contract wants a 422 for anything not written as an integer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar, cast, get_args

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.params import ParameterKwarg
from litestar.types import Empty

from service.errors import FieldError, InvalidInput, invalid_body

MAX_BODY_BYTES = 64 * 1024
_PLAIN_INTEGER = re.compile(r"-?[0-9]+")


BodyT = TypeVar("BodyT", bound=msgspec.Struct)


def validated(data: Any, model: type[BodyT]) -> BodyT:
    """Check the decoded body against `model` in msgspec's strict mode.

    Litestar converts bodies leniently ("1", 1.0 and true pass as integers), which the
    contract refuses; so `data` is declared with SkipValidation (it still documents the
    body in OpenAPI, but arrives as the decoded JSON) and this is its one validation.
    """
    try:
        return msgspec.convert(data, type=model)
    except msgspec.ValidationError as exc:
        raise invalid_body(exc) from None


class JSONRequest(Request[Any, Any, Any]):
    """A request whose body is read only if it is declared JSON (or not declared at all).

    It also reads the body more cheaply than Litestar's stream(), which parses every
    header again to find the content length (profiled: about a fifth of a POST's
    framework CPU).
    """

    async def json(self) -> Any:
        if self._json is Empty:
            media_type = _media_type(self.scope["headers"])
            if media_type and media_type != b"application/json" and not media_type.endswith(b"+json"):
                raise HTTPException(
                    status_code=415, detail=f"the body must be JSON, not {media_type.decode()}"
                )
            try:
                self._json = msgspec.json.decode(await self.body() or b"null")
            except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
                # Litestar maps only DecodeError; the others are bad bodies all the same (400 -> 422).
                raise ClientException(f"the body is not valid JSON: {exc}") from None
        return self._json

    async def body(self) -> bytes:
        """The whole body, at most MAX_BODY_BYTES or the route's `max_body_bytes` (413 beyond), read once."""
        if self._body is Empty:
            limit: int = self.scope["route_handler"].opt.get("max_body_bytes", MAX_BODY_BYTES)
            chunks: list[bytes] = []
            size = 0
            while True:
                event = await self.receive()
                if event["type"] == "http.disconnect":
                    raise InternalServerException("client disconnected prematurely")
                chunk = cast("bytes", event.get("body", b""))
                size += len(chunk)
                if size > limit:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
                if not event.get("more_body", False):
                    break
            self._body = self._connection_state.body = b"".join(chunks)
            self.is_connected = False
        return self._body


def _media_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower()
    return b""


async def refuse_lenient_integers(request: Request[Any, Any, Any]) -> None:
    """before_request hook: every path parameter, and every integer query parameter, must be
    written as an integer.

    Async on purpose: Litestar runs a sync hook in a worker thread (measured: a third of a GET's CPU).
    """
    errors = [
        FieldError(field=name, message="Expected an integer", source="path")
        for name, value in request.path_params.items()
        if not _PLAIN_INTEGER.fullmatch(str(value))
    ]
    if request.scope["query_string"]:
        errors += [
            FieldError(field=name, message="Expected an integer", source="query")
            for name in _integer_query_params(request.route_handler)
            if (value := request.query_params.get(name)) is not None and not _PLAIN_INTEGER.fullmatch(value)
        ]
    if errors:
        raise InvalidInput(errors)


_INTEGER_QUERY_PARAMS = "integer_query_params"


def _integer_query_params(handler: HTTPRouteHandler) -> tuple[str, ...]:
    """The query parameters the handler declares as integers (`Limit`, `After`, ...), read from
    its signature once and kept in its `opt`, so a new one can never be missed."""
    names: tuple[str, ...] | None = handler.opt.get(_INTEGER_QUERY_PARAMS)
    if names is None:
        names = handler.opt[_INTEGER_QUERY_PARAMS] = tuple(
            _query_name(name, field.kwarg_definition)
            for name, field in handler.parsed_fn_signature.parameters.items()
            if int in (field.annotation, *get_args(field.annotation))
            and _is_query(name, field.kwarg_definition, handler)
        )
    return names


def _is_query(name: str, kwarg: Any, handler: HTTPRouteHandler) -> bool:
    if kwarg is not None and not isinstance(kwarg, ParameterKwarg):
        return False  # a body or a dependency
    if isinstance(kwarg, ParameterKwarg) and (kwarg.header or kwarg.cookie):
        return False
    return not any(f"{{{name}:" in path or f"{{{name}}}" in path for path in handler.paths)


def _query_name(name: str, kwarg: Any) -> str:
    return (kwarg.query if isinstance(kwarg, ParameterKwarg) else None) or name
