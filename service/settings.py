"""Settings read once from the environment; every knob has a documented default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    # A streaming replica for the GETs of students, courses and enrollments (service/reads.py).
    database_read_url: str | None = None
    # Reads leave the replica while it may be further behind the primary than this.
    read_max_lag_ms: int = 1000
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    pool_min_size: int = 2
    pool_max_size: int = 16
    # Server-side limit for one statement, and the client-side wait for any reply.
    statement_timeout_ms: int = 3000
    # How long a request waits for a free pooled connection before it gets a 503.
    pool_acquire_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    # 0 for PgBouncer in transaction mode (no named prepared statements).
    statement_cache_size: int = 1024
    # The planner's price of a random page read on our sessions. PostgreSQL's 4.0 models
    # spinning disks; with it, a student's 10 courses are joined by hashing every course.
    random_page_cost: float = 1.1
    # One JSON line per request on stdout.
    access_log: bool = True
    # API keys on every resource route. Off only for local experiments: it warns at every start.
    auth: bool = True
    # How often each process re-reads the keys it has verified: a revocation or an expiry
    # set later takes effect within this time (API.md promises 5 s).
    auth_refresh_s: float = 2.0
    # Events older than this are removed from the feed (0: never).
    events_retention_days: int = 30
    # On SIGTERM, /ready answers 503 for this long before the server stops taking connections,
    # so a load balancer's health check takes the process out first (service/drain.py).
    shutdown_drain_s: float = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables, failing with one clear message."""
        env = os.environ if environ is None else environ
        database_url = env.get("DATABASE_URL", "")
        if not database_url:
            raise SettingsError("DATABASE_URL is not set (e.g. postgresql://user@127.0.0.1:5432/enrollment)")
        check_database_url(database_url)
        if read_url := env.get("DATABASE_READ_URL"):
            check_database_url(read_url, "DATABASE_READ_URL")
        given: dict[str, Any] = {
            "database_read_url": read_url or None,
            "read_max_lag_ms": _int(env, "DB_READ_MAX_LAG_MS", 1, 3_600_000),
            "host": env.get("HOST") or None,
            "port": _int(env, "PORT", 1, 65535),
            "workers": _int(env, "WORKERS", 1, 64),
            "pool_min_size": _int(env, "DB_POOL_MIN", 0, 1000),
            "pool_max_size": _int(env, "DB_POOL_MAX", 1, 1000),
            "statement_timeout_ms": _int(env, "DB_STATEMENT_TIMEOUT_MS", 1, 600_000),
            "pool_acquire_timeout_s": _number(env, "DB_ACQUIRE_TIMEOUT_S", 0, 600, "seconds"),
            "connect_timeout_s": _number(env, "DB_CONNECT_TIMEOUT_S", 0, 600, "seconds"),
            "statement_cache_size": _int(env, "DB_STATEMENT_CACHE_SIZE", 0, 100_000),
            "random_page_cost": _number(env, "DB_RANDOM_PAGE_COST", 0, 1000),
            "access_log": _bool(env, "ACCESS_LOG"),
            "auth": _bool(env, "AUTH"),
            "auth_refresh_s": _number(env, "AUTH_REFRESH_S", 0, 5, "seconds"),
            "events_retention_days": _int(env, "EVENTS_RETENTION_DAYS", 0, 100_000),
            "shutdown_drain_s": _number(env, "SHUTDOWN_DRAIN_S", 0, 60, "seconds", zero=True),
        }
        settings = cls(database_url=database_url, **{k: v for k, v in given.items() if v is not None})
        if settings.pool_min_size > settings.pool_max_size:
            raise SettingsError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        return settings


def check_database_url(url: str, name: str = "DATABASE_URL") -> None:
    """Reject anything that is not a postgresql:// URL before a driver sees it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise SettingsError(f"{name} is malformed: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(f"{name} must start with postgresql://, not {parts.scheme or url!r}")
    if not parts.path.strip("/"):
        raise SettingsError(f"{name} names no database (postgresql://user@host:port/DATABASE)")


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _number(
    env: Mapping[str, str], name: str, low: float, high: float, unit: str = "", *, zero: bool = False
) -> float | None:
    """A number above `low` and at most `high` (or exactly 0, with `zero`)."""
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number{f' of {unit}' if unit else ''}, not {raw!r}") from None
    if not (low < value <= high or (zero and value == 0)):
        raise SettingsError(
            f"{name} must be between {low} and {high}{f' {unit}' if unit else ''}, not {value}"
        )
    return value


def _bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")
