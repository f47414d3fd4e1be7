"""Fixtures, layered: server → fresh database → migrated schema → app client → clean tables.

Every run creates its own database on $DATABASE_URL's server (or on the embedded
PostgreSQL when DATABASE_URL is not set) and drops it at the end.

With TEST_VIA_PGBOUNCER=1 (`make test-pgbouncer`) the service under test (the app, and the
processes `running_service` starts) reaches that database through a real PgBouncer in
transaction mode, with DB_STATEMENT_CACHE_SIZE=0; checks and set-up stay direct.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import helpers
import httpx
import pytest
from components import pgbouncer
from helpers import HeldClient, mint_key
from litestar import Litestar

from service import migrate
from service.app import create_app
from service.db import planner_settings
from service.devdb import DATA_DIR, start_embedded, with_database
from service.settings import Settings


@pytest.fixture(scope="session")
def server_url() -> str:
    """A PostgreSQL server to create test databases on: $DATABASE_URL's, or the embedded one."""
    return os.environ.get("DATABASE_URL") or start_embedded(DATA_DIR / "test-postgres")


async def create_database(server_url: str) -> str:
    """A new, empty database on the server; answers its URL."""
    name = f"enrollment_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1].split("?", 1)[0]
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """This run's own database, dropped when the run ends."""
    url = await create_database(server_url)
    yield url
    await drop_database(server_url, url)


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A database of its own for one test (migration tests need a blank slate)."""
    url = await create_database(server_url)
    yield url
    await drop_database(server_url, url)


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    """The run's database with every migration applied, as `make migrate` does."""
    migrate.apply(database_url)
    return database_url


VIA_PGBOUNCER = os.environ.get("TEST_VIA_PGBOUNCER") == "1"


@pytest.fixture(scope="session")
async def service_database_url(migrated_url: str) -> AsyncIterator[str]:
    """Where the service under test connects: the run's database, or PgBouncer in front of it."""
    if not VIA_PGBOUNCER:
        yield migrated_url
        return
    await set_session_settings_on(migrated_url)
    with pgbouncer(migrated_url) as bouncer:
        url = bouncer.url(migrated_url)
        helpers.SERVICE_DATABASE_URLS[migrated_url] = url
        os.environ["DB_STATEMENT_CACHE_SIZE"] = "0"  # for the processes running_service starts
        yield url
        database = url.rsplit("/", 1)[1]
        assert bouncer.transactions(database) > 1000, "the service under test did not go through PgBouncer"
        del os.environ["DB_STATEMENT_CACHE_SIZE"]
        del helpers.SERVICE_DATABASE_URLS[migrated_url]


async def set_session_settings_on(database_url: str) -> None:
    """What PgBouncer drops from the service's startup packet, set on the database instead."""
    defaults = Settings(database_url=database_url)
    name = urlsplit(database_url).path.lstrip("/")  # the URL may name a socket directory after it
    conn = await asyncpg.connect(database_url)
    try:
        for setting, value in {
            "statement_timeout": defaults.statement_timeout_ms,
            **planner_settings(defaults),
        }.items():
            await conn.execute(f'ALTER DATABASE "{name}" SET {setting} = {value!r}')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings(service_database_url: str) -> Settings:
    return Settings(
        database_url=service_database_url,
        pool_min_size=1,
        pool_max_size=20,
        statement_cache_size=0 if VIA_PGBOUNCER else 1024,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> Litestar:
    """One app (and one pool) for the whole run."""
    return create_app(settings)


@pytest.fixture(scope="session")
async def admin_key(migrated_url: str) -> str:
    """An admin key in the run's database: the shared client sends it with every request."""
    return (await mint_key(migrated_url, "admin", name="test-suite")).key


@pytest.fixture(scope="session")
async def session_client(app: Litestar, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client calling the app in this event loop, so gathered requests really run in parallel."""
    held = HeldClient(app, admin_key)
    yield await held.start()
    await held.stop()


@pytest.fixture(scope="session")
async def db(migrated_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection for checking what the API wrote."""
    conn = await asyncpg.connect(migrated_url)
    yield conn
    await conn.close()


@pytest.fixture
async def client(session_client: httpx.AsyncClient, db: asyncpg.Connection) -> httpx.AsyncClient:
    """The app client, with the data tables emptied first (yoyo's own tables and the keys are kept)."""
    await db.execute("TRUNCATE students, courses CASCADE")
    return session_client
