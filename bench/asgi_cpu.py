"""CPU time per request through an ASGI app, in-process: no socket, no server, no database.

Shared by the in-process cost benchmarks (`auth_cost.py`, `header_cost.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Headers = list[tuple[bytes, bytes]]


def course_list_path(n: int) -> str:
    return f"/students/{n % 10_000 + 1}/courses"


async def cpu_per_request(
    app: Any,
    requests: int,
    *,
    headers: Headers,
    method: str = "GET",
    path: Callable[[int], str] = course_list_path,
    body: bytes = b"",
) -> float:
    """CPU seconds per request through `app`; any answer but 200 or 201 stops the run."""

    async def receive() -> Any:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start" and message["status"] not in (200, 201):
            raise SystemExit(f"answered {message['status']}")

    start = time.process_time()  # CPU time: waiting for a busy core does not count
    for n in range(requests):
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path(n),
            "raw_path": b"",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        await app(scope, receive, send)
    return (time.process_time() - start) / requests
