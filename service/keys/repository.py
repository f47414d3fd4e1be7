"""API keys in the database. Keys are stored as hashes; a new key is answered once."""

from __future__ import annotations

import asyncpg

from service.db import QueryGroup, Statements, sql_file
from service.errors import ApiKeyNotFound
from service.keys.schemas import ApiKey, ApiKeyCreate, NewApiKey
from service.keys.scopes import normalized
from service.keys.tokens import key_hash, mint_key, prefix_of
from service.pagination import Page, fetch_size, page_of


class KeyQueries(QueryGroup, folder="keys"):
    create = sql_file()
    get = sql_file()
    list = sql_file()
    revoke = sql_file()
    find = sql_file()


async def create_key(db: Statements, *, new: ApiKeyCreate, key: str | None = None) -> NewApiKey:
    """Mint a key (or store the one given, for the development key) and answer it, key included."""
    key = key or mint_key()
    row = await db.fetch_record(
        KeyQueries.create,
        new.name,
        prefix_of(key),
        key_hash(key.encode()),
        normalized(new.scopes),
        new.expires_at,
    )
    assert row is not None  # INSERT ... RETURNING always answers one row
    return NewApiKey(**row, key=key)


async def get_key(db: Statements, *, key_id: int) -> ApiKey:
    key = await db.fetch_struct(KeyQueries.get, key_id, into=ApiKey)
    if key is None:
        raise ApiKeyNotFound(key_id)
    return key


async def list_keys(db: Statements, *, after: int | None, limit: int) -> Page[ApiKey]:
    rows = await db.fetch_structs(KeyQueries.list, after or 0, fetch_size(limit), into=ApiKey)
    return page_of(rows, limit)


async def revoke_key(db: Statements, *, key_id: int) -> bytes:
    """Revoke the key (once; again changes nothing); answers its hash."""
    digest: bytes | None = await db.fetch_value(KeyQueries.revoke, key_id)
    if digest is None:
        raise ApiKeyNotFound(key_id)
    return digest


async def find_keys(db: Statements, digests: list[bytes]) -> list[asyncpg.Record]:
    """The stored state of the keys with these hashes (unknown hashes have no row)."""
    return await db.fetch_records(KeyQueries.find, digests)
