"""Serve the API: `python -m service [--migrate]` (HOST, PORT, WORKERS from the environment).

Checks the settings, the database and every SQL file before uvicorn starts, so a
mistake ends in one clear line and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import asyncpg
import uvicorn

# Importing the app declares every QueryGroup, so the preflight checks them all.
from service import app as _app  # noqa: F401
from service import migrate
from service.db import DATABASE_OUTAGES, check_queries
from service.devdb import resolve_database_url
from service.keys.cli import DEV_KEY_FILE, development_key
from service.settings import Settings


async def preflight(settings: Settings) -> None:
    """Prepare every statement once, if the database answers.

    A database that is down is not fatal: replicas must come up without it (/ready
    tells the load balancer) and connect when it returns.
    """
    try:
        # The service's statement cache size: with 0 (PgBouncer in transaction mode) the check
        # prepares unnamed statements; named ones would stay on a server connection PgBouncer
        # hands to the next client, whose own check then collides with them.
        conn = await asyncpg.connect(
            settings.database_url,
            timeout=settings.connect_timeout_s,
            statement_cache_size=settings.statement_cache_size,
        )
    except DATABASE_OUTAGES as exc:
        print(
            f"enrollment-service: warning: the database is unreachable ({exc}); starting anyway",
            file=sys.stderr,
        )
        return
    try:
        await check_queries(conn)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    args = parser.parse_args(argv)
    embedded = not os.environ.get("DATABASE_URL")
    try:
        os.environ["DATABASE_URL"] = resolve_database_url()
        settings = Settings.from_env()
        if args.migrate:
            migrate.apply(settings.database_url)
        asyncio.run(preflight(settings))
        if embedded and settings.auth:
            key = development_key(settings.database_url)
            print(
                f"enrollment-service: development API key (admin), also in {DEV_KEY_FILE}:", file=sys.stderr
            )
            print(key, file=sys.stderr)
    except Exception as exc:  # one clear line for operators, not a traceback wall
        print(
            f"enrollment-service: cannot start: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr
        )
        return 1
    print(f"enrollment-service: serving on http://{settings.host}:{settings.port}", file=sys.stderr)
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal to the
    # handler it found: make that a clean exit 0 rather than "killed by SIGTERM".
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
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
