"""Where Litestar is more lenient than the contract, before any handler runs.

- Bodies: only JSON media types are read (415 otherwise), and a body too deeply
  nested or with invalid UTF-8 inside a string is a bad body (422), not a crash.
- Integers in paths and queries: Litestar converts "7.0" and "1e3" to 7 and 1000;
  the contract wants a 422 for anything not written as an integer.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.exceptions import ClientException, HTTPException

from service.errors import FieldError, InvalidInput

_PLAIN_INTEGER = re.compile(r"-?[0-9]+")
# The query parameters that hold integers (ids and page sizes).
INTEGER_QUERY_PARAMS = ("limit", "after")


class JSONRequest(Request[Any, Any, Any]):
    """A request whose body is read only if it is declared JSON (or not declared at all)."""

    async def json(self) -> Any:
        media_type = self.content_type[0]
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise HTTPException(
                status_code=415, detail=f"the body must be application/json, not {media_type}"
            )
        try:
            return await super().json()
        except (RecursionError, UnicodeDecodeError) as exc:
            # Litestar only maps msgspec.DecodeError; these are bad bodies all the same (400 -> 422).
            raise ClientException(f"the body is not valid JSON: {type(exc).__name__}") from None


async def refuse_lenient_integers(request: Request[Any, Any, Any]) -> None:
    """before_request hook: every path parameter, and `limit`/`after`, must be written as an integer.

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
            for name in INTEGER_QUERY_PARAMS
            if (value := request.query_params.get(name)) is not None and not _PLAIN_INTEGER.fullmatch(value)
        ]
    if errors:
        raise InvalidInput(errors)
