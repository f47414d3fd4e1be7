"""The embedded PostgreSQL for machines without one, and throw-away databases.

When DATABASE_URL is not set, `make run`, `make migrate` and `make test` start a
real PostgreSQL from the `pgserver` wheel, with its data under `.data/`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".data"
EMBEDDED_DB_NAME = "enrollment"

# pgserver stops a server when the last process holding it exits; keep ours alive with us.
_servers: dict[Path, Any] = {}


def start_embedded(data_dir: Path = DATA_DIR / "postgres") -> str:
    """Start (or reuse) the embedded server and answer a URL of its server-wide `postgres` database."""
    # pgserver warns about XDG_RUNTIME_DIR on every import; it falls back to /tmp, which is fine.
    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver  # noqa: PLC0415 - dev-only dependency: the deployed image always has DATABASE_URL

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if data_dir not in _servers:
        _servers[data_dir] = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    return str(_servers[data_dir].get_uri())


def resolve_database_url() -> str:
    """DATABASE_URL when set; otherwise the embedded server's `enrollment` database."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    server_url = start_embedded()
    server = _servers[DATA_DIR / "postgres"]
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DB_NAME};")
    return with_database(server_url, EMBEDDED_DB_NAME)


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))
