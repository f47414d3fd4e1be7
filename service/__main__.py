"""Serve the API: `python -m service [--migrate]` (HOST, PORT, WORKERS from the environment).

Checks the settings, the database and every SQL file before uvicorn starts, so a
mistake ends in one clear line and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg
import uvicorn

from service import migrate
from service.db import check_queries
from service.devdb import resolve_database_url
from service.settings import Settings


async def preflight(settings: Settings) -> None:
    """Connect once and prepare every statement."""
    conn = await asyncpg.connect(settings.database_url, timeout=settings.connect_timeout_s)
    try:
        await check_queries(conn)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    args = parser.parse_args(argv)
    try:
        os.environ["DATABASE_URL"] = resolve_database_url()
        settings = Settings.from_env()
        if args.migrate:
            migrate.apply(settings.database_url)
        asyncio.run(preflight(settings))
    except Exception as exc:  # one clear line for operators, not a traceback wall
        print(
            f"enrollment-service: cannot start: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr
        )
        return 1
    print(f"enrollment-service: serving on http://{settings.host}:{settings.port}", file=sys.stderr)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
