"""An answer whose JSON body PostgreSQL already built, sent as it is.

The hot enrollment routes return one: no decoding into Structs, no re-encoding, and
none of Litestar's per-response header building (measured in bench/README.md).
Their OpenAPI entries document the body's shape with `ResponseSpec`.
"""

from __future__ import annotations

from litestar.types import Receive, Scope, Send

_CONTENT_TYPE = (b"content-type", b"application/json")


class PrebuiltJSON:
    """A minimal ASGI response: status, content type and length, body."""

    __slots__ = ("body", "status")

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body = body
        self.status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [_CONTENT_TYPE, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
