"""API keys from the shell: `python -m service.keys create|list|revoke` (`make api-key`).

Works on $DATABASE_URL or, when it is not set, on the embedded PostgreSQL, like
`make migrate`. `create` prints the new key alone on its last line, so scripts can
take it with `tail -n 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from service import migrate
from service.db import Database
from service.devdb import DATA_DIR, resolve_database_url
from service.errors import invalid_body
from service.keys import repository
from service.keys.schemas import ApiKeyCreate, NewApiKey
from service.keys.tokens import key_hash, looks_like_key
from service.settings import Settings

DEV_KEY_FILE = DATA_DIR / "dev-api-key"

T = TypeVar("T")


async def on_database(database_url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` on a one-connection pool of `database_url`."""
    db = await Database.connect(Settings(database_url=database_url, pool_min_size=1, pool_max_size=1))
    try:
        return await work(db)
    finally:
        await db.close()


def create_key(
    database_url: str, *, name: str, scopes: list[str], expires_at: str | None = None
) -> NewApiKey:
    """Mint and store a key; raises InvalidInput for a bad name, scope or expiry."""
    try:
        new = msgspec.convert({"name": name, "scopes": scopes, "expires_at": expires_at}, ApiKeyCreate)
    except msgspec.ValidationError as exc:
        raise invalid_body(exc) from None
    if new.expires_at is not None and new.expires_at <= datetime.now(UTC):
        raise ValueError("--expires-at must be in the future")
    return asyncio.run(on_database(database_url, lambda db: repository.create_key(db, new=new)))


def development_key(database_url: str, key_file: Path = DEV_KEY_FILE) -> str:
    """The embedded database's admin key: the same across restarts, kept in `key_file` (mode 0600).

    Minted on first use; minted again if the file is gone or its key was revoked.
    """
    key = key_file.read_text().strip() if key_file.exists() else ""

    async def usable_or_new(db: Database) -> str:
        if looks_like_key(key.encode()):
            rows = await repository.find_keys(db, [key_hash(key.encode())])
            if rows and rows[0]["revoked_at"] is None and rows[0]["expires_at"] is None:
                return key
            if not rows:  # a fresh database: store the key the developer already has
                new = ApiKeyCreate(name="development", scopes=["admin"])
                return (await repository.create_key(db, new=new, key=key)).key
        return (await repository.create_key(db, new=ApiKeyCreate(name="development", scopes=["admin"]))).key

    usable = asyncio.run(on_database(database_url, usable_or_new))
    if usable != key:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(usable + "\n")
    key_file.chmod(0o600)
    return usable


def _list(database_url: str) -> None:
    page = asyncio.run(on_database(database_url, lambda db: repository.list_keys(db, after=None, limit=500)))
    print(f"{'id':>6}  {'prefix':12}  {'scopes':18}  {'expires_at':25}  {'revoked_at':25}  name")
    for key in page.items:
        expires = key.expires_at.isoformat() if key.expires_at else "never"
        revoked = key.revoked_at.isoformat() if key.revoked_at else "-"
        print(
            f"{key.id:>6}  {key.prefix:12}  {','.join(key.scopes):18}  {expires:25}  {revoked:25}  {key.name}"
        )


def _revoke(database_url: str, key_id: int) -> None:
    asyncio.run(on_database(database_url, lambda db: repository.revoke_key(db, key_id=key_id)))
    print(f"revoked API key {key_id}: every worker refuses it within 5 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="mint a key; its last line is the key")
    create.add_argument("--name", required=True, help="who or what uses the key (1..200 chars)")
    create.add_argument(
        "--scopes", nargs="+", required=True, help="read, write and/or admin (space- or comma-separated)"
    )
    create.add_argument("--expires-at", help="an RFC 3339 time in the future (default: never)")
    create.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    commands.add_parser("list", help="every key, without the keys themselves")
    revoke = commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    args = parser.parse_args(argv)
    try:
        database_url = resolve_database_url()
        if args.command == "create":
            _create(database_url, args)
        elif args.command == "list":
            _list(database_url)
        else:
            _revoke(database_url, args.id)
    except Exception as exc:  # one clear line for operators, not a traceback wall
        print(f"keys: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _create(database_url: str, args: Any) -> None:
    if args.migrate:
        migrate.apply(database_url)
    scopes = [scope for arg in args.scopes for scope in arg.replace(",", " ").split()]
    key = create_key(database_url, name=args.name, scopes=scopes, expires_at=args.expires_at)
    print(f"created API key {key.id} ({key.name}; scopes: {' '.join(key.scopes)}); it is shown only once:")
    print(key.key)


def _one_line(exc: Exception) -> str:
    detail = getattr(exc, "detail", None) or str(exc)
    return f"{type(exc).__name__}: {detail}".splitlines()[0]
