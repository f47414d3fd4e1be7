"""Fixtures, layered: server → fresh database → migrated schema → app client → clean tables.

Every run creates its own database on $DATABASE_URL's server (or on the embedded
PostgreSQL when DATABASE_URL is not set) and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from helpers import HeldClient, mint_key
from litestar import Litestar

from service import migrate
from service.app import create_app
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


@pytest.fixture(scope="session")
def settings(migrated_url: str) -> Settings:
    return Settings(database_url=migrated_url, pool_min_size=1, pool_max_size=20)


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
