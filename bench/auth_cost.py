"""What the API key check costs a request, in microseconds, measured in-process.

    .venv/bin/python bench/auth_cost.py [--requests 20000] [--rounds 7]

Two Litestar apps with the same trivial route behind the same router: one with the
`Authenticate` middleware (its key already cached, as in the steady state), one
without. Each request runs through the whole ASGI app (routing, Litestar's layers,
the middleware, the handler, the answer) with no socket and no database, so the
difference of the two is the check's whole cost, Litestar's extra exception layer
included. Rounds alternate; the medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_cpu import cpu_per_request
from litestar import Litestar, Router, get
from litestar.middleware import DefineMiddleware

from service.auth import Authenticate, KeyCache, VerifiedKey
from service.keys.scopes import Scope
from service.keys.tokens import key_hash, mint_key
from service.observability import AuthMetrics

KEY = mint_key()


@get("/students/{student_id:int}/courses", required_scope=Scope.READ)
async def courses(student_id: int) -> bytes:
    return b"[]"


def build(with_auth: bool) -> Litestar:
    cache = KeyCache(AuthMetrics(), refresh_s=2)
    cache._valid[key_hash(KEY.encode())] = VerifiedKey(1, Scope.WRITE, None)  # verified earlier
    middleware = [DefineMiddleware(Authenticate, keys=cache)] if with_auth else []
    return Litestar([Router("/", route_handlers=[courses], middleware=middleware)], openapi_config=None)


async def serve(app: Litestar, requests: int) -> float:
    """CPU seconds per request through the app's ASGI callable."""
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {KEY}".encode())]
    return await cpu_per_request(app, requests, headers=headers)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    apps = {"without": build(False), "with": build(True)}
    for app in apps.values():
        await serve(app, 2_000)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in apps}
    for round_number in range(args.rounds):
        order = list(apps) if round_number % 2 == 0 else list(reversed(apps))
        for name in order:
            seconds[name].append(await serve(apps[name], args.requests))
    without, with_auth = (statistics.median(seconds[name]) * 1e6 for name in ("without", "with"))
    print(f"per request, median of {args.rounds} rounds of {args.requests:,}:")
    print(f"  without the check {without:6.1f} µs")
    print(f"  with the check    {with_auth:6.1f} µs")
    print(f"  the check costs   {with_auth - without:6.1f} µs ({(with_auth - without) / without:.1%})")


if __name__ == "__main__":
    asyncio.run(main())
