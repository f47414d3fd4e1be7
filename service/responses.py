"""An answer whose JSON body is already encoded (by PostgreSQL or by msgspec), sent as it is.

The hot enrollment routes return one: no decoding into Structs, no re-encoding, and
none of Litestar's per-response header building (measured in bench/README.md).
Their OpenAPI entries document the body's shape with `ResponseSpec`.
"""

from __future__ import annotations

from litestar.types import Receive, Scope, Send

JSON = b"application/json"
ResponseHeaders = list[tuple[bytes, bytes]]


class PrebuiltJSON:
    """A minimal ASGI response: status, content type and length, any extra headers, body."""

    __slots__ = ("body", "headers", "media_type", "status")

    def __init__(
        self, body: bytes, status: int = 200, headers: ResponseHeaders | None = None, media_type: bytes = JSON
    ) -> None:
        self.body = body
        self.status = status
        self.headers = headers
        self.media_type = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", self.media_type), (b"content-length", str(len(self.body)).encode())]
        if self.headers:
            headers += self.headers
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class NotModified:
    """304: the client's copy is current; the answer has its ETag and no body (RFC 9110 §15.4.5)."""

    __slots__ = ("etag",)

    def __init__(self, etag: str) -> None:
        self.etag = etag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"etag", self.etag.encode())]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
