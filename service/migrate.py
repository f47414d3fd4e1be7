"""Schema migrations (yoyo, SQL files in migrations/): `python -m service.migrate COMMAND`.

Commands: apply, rollback (the newest), list (applied), break-lock (after a crash).

This is the one migration command: `make migrate`, `make rollback` and the compose
`migrate` service all run it. yoyo's lock makes concurrent runs safe; we wait for it
longer than the yoyo CLI's fixed 10 s so two shells at once both succeed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from yoyo import get_backend, read_migrations

from service.devdb import resolve_database_url
from service.settings import SettingsError, check_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
LOCK_TIMEOUT_S = 120


def yoyo_url(database_url: str) -> str:
    """yoyo picks its driver from the scheme: psycopg 3 is `postgresql+psycopg`."""
    scheme, rest = database_url.split("://", 1)
    if scheme not in ("postgresql", "postgres"):
        raise SettingsError(f"DATABASE_URL must start with postgresql://, not {scheme}://")
    return f"postgresql+psycopg://{rest}"


def apply(database_url: str) -> list[str]:
    """Apply every pending migration; answer the ids applied."""
    backend = get_backend(yoyo_url(database_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock(timeout=LOCK_TIMEOUT_S):
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def rollback(database_url: str) -> list[str]:
    """Undo the newest applied migration; answer the ids rolled back."""
    backend = get_backend(yoyo_url(database_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock(timeout=LOCK_TIMEOUT_S):
        newest = backend.to_rollback(migrations)[:1]
        backend.rollback_migrations(newest)
    return [m.id for m in newest]


def applied(database_url: str) -> list[str]:
    """The ids of the migrations applied, oldest first."""
    backend = get_backend(yoyo_url(database_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    return [m.id for m in migrations if backend.is_applied(m)]


def break_lock(database_url: str) -> None:
    """Clear the lock a killed migration run left behind."""
    get_backend(yoyo_url(database_url)).break_lock()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.migrate", description=__doc__)
    parser.add_argument("command", choices=["apply", "rollback", "list", "break-lock"])
    args = parser.parse_args(argv)
    try:
        database_url = resolve_database_url()
        check_database_url(database_url)
        if args.command == "apply":
            done = apply(database_url)
            print(f"applied: {', '.join(done)}" if done else "nothing to apply: the schema is up to date")
        elif args.command == "rollback":
            done = rollback(database_url)
            print(f"rolled back: {', '.join(done)}" if done else "nothing to roll back")
        elif args.command == "break-lock":
            break_lock(database_url)
            print("migration lock cleared")
        else:
            print("\n".join(applied(database_url)) or "no migration applied")
    except Exception as exc:  # one clear line for operators, not a traceback wall
        print(f"migrate: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
