"""Who may call what: `Authorization: Bearer <key>` on every resource route.

Each route declares the scope it needs in its decorator (`required_scope=Scope.READ`).
`Authenticate` is the one check: a Litestar middleware on the resource router, so it
runs before the handler reads the body, and a route cannot leave it by accident
(`check_routes_declare_scopes` refuses to build an app with a route that declares none).

Keys are verified once against the database and then kept in `KeyCache`: in the
steady state a request makes no round trip for its key. Every `refresh_s` seconds the
cache re-reads the keys it holds, in one query, so a revocation reaches every worker
and every replica within that time (API.md promises 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, NamedTuple, cast

import asyncpg
from litestar import Litestar, Request
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPScope, Receive, Send
from litestar.types import Scope as ASGIScope

from service.db import Database
from service.errors import InsufficientScope, Unauthorized
from service.keys.repository import find_keys
from service.keys.scopes import Scope, widest
from service.keys.tokens import key_hash, looks_like_key
from service.observability import AuthMetrics

REQUIRED_SCOPE = "required_scope"  # the route option naming the scope a route needs

log = logging.getLogger("service.auth")


class VerifiedKey(NamedTuple):
    id: int
    scope: Scope  # the widest of its scopes
    expires_at: float | None  # seconds since the epoch


class KeyRefused(Exception):
    """The key is unknown, revoked or expired (the reason is for the metrics only)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyCache:
    """Verified keys by hash, re-read from the database every `refresh_s` seconds.

    A key missing from the cache is looked up once, however many requests bring it at
    once: they all wait for the same lookup. Keys found unknown, revoked or expired are
    remembered too (such a key can never become valid), up to `MAX_REFUSED` of them.
    """

    MAX_REFUSED = 10_000

    def __init__(self, metrics: AuthMetrics, *, refresh_s: float) -> None:
        self.metrics = metrics
        self.refresh_s = refresh_s
        self.db: Database | None = None
        self._valid: dict[bytes, VerifiedKey] = {}
        self._refused: dict[bytes, str] = {}
        self._lookups: dict[bytes, asyncio.Future[VerifiedKey]] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> KeyCache:
        # Litestar deep-copies a router when it registers it, middleware arguments included;
        # the app and its middleware must share this one cache.
        return self

    def cached(self, digest: bytes) -> VerifiedKey | None:
        """The key if it is cached and not expired: the path of almost every request."""
        key = self._valid.get(digest)
        if key is not None and key.expires_at is not None and key.expires_at <= time.time():
            self._refuse(digest, "expired")
            return None
        return key

    async def verify(self, digest: bytes) -> VerifiedKey:
        """Look the key up (once for all the requests waiting for it); raise KeyRefused."""
        if (reason := self._refused.get(digest)) is not None:
            raise KeyRefused(reason)
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = self._lookups[digest] = asyncio.ensure_future(self._look_up(digest))
            lookup.add_done_callback(functools.partial(self._lookup_done, digest))
        # Shielded: a caller that hangs up must not cancel the lookup the others wait for.
        return await asyncio.shield(lookup)

    def _lookup_done(self, digest: bytes, lookup: asyncio.Future[VerifiedKey]) -> None:
        del self._lookups[digest]
        if not lookup.cancelled():
            lookup.exception()  # retrieved here, so an outage nobody waited for is not logged as lost

    def forget(self, digest: bytes) -> None:
        """Refuse the key from now on in this process (a revocation it made itself)."""
        self._refuse(digest, "revoked")

    async def _look_up(self, digest: bytes) -> VerifiedKey:
        if self.db is None:
            raise ConnectionRefusedError("the database pool is not open yet")
        self.metrics.lookups += 1
        self._store(digest, await find_keys(self.db, [digest]))
        if (reason := self._refused.get(digest)) is not None:
            raise KeyRefused(reason)
        return self._valid[digest]

    async def refresh(self) -> None:
        """Re-read every cached key in one query: revoked, expired and deleted ones leave."""
        if self.db is None or not self._valid:
            return
        digests = list(self._valid)
        self._store(digests, await find_keys(self.db, digests))

    def _store(self, digests: bytes | list[bytes], rows: Iterable[asyncpg.Record]) -> None:
        """Cache what the database said of these keys; a digest with no row is unknown."""
        now = time.time()
        missing = {digests} if isinstance(digests, bytes) else set(digests)
        for row in rows:
            digest = bytes(row["key_hash"])
            missing.discard(digest)
            expires_at = None if row["expires_at"] is None else row["expires_at"].timestamp()
            if row["revoked_at"] is not None:
                self._refuse(digest, "revoked")
            elif expires_at is not None and expires_at <= now:
                self._refuse(digest, "expired")
            elif self._refused.get(digest) != "revoked":  # a read from before the revocation
                self._valid[digest] = VerifiedKey(row["id"], widest(row["scopes"]), expires_at)
        for digest in missing:
            self._refuse(digest, "unknown")

    def _refuse(self, digest: bytes, reason: str) -> None:
        self._valid.pop(digest, None)
        if len(self._refused) >= self.MAX_REFUSED:
            self._refused.clear()
        self._refused[digest] = reason

    @contextlib.asynccontextmanager
    async def refreshing(self, db: Database) -> AsyncIterator[None]:
        """Use `db`, and re-read the cached keys every `refresh_s` seconds, while inside."""
        self.db = db
        task = asyncio.create_task(self._refresh_forever(), name="api-key-refresh")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception as exc:  # the refresh must outlive any failure, or revocations stop
                # Cached keys keep working through an outage; nobody can revoke one meanwhile.
                log.warning("API keys not re-read: %r", exc)


class Authenticate:
    """The middleware: 401 without a valid key, 403 when its scope is too narrow.

    Runs before the handler, so before the body is read. The caller's key id goes into
    the request's state as `key_id` (the access log names callers by it).
    """

    def __init__(self, app: ASGIApp, keys: KeyCache) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, asgi_scope: ASGIScope, receive: Receive, send: Send) -> None:
        scope = cast("HTTPScope", asgi_scope)  # it stands only before HTTP routes
        required: Scope | None = scope["route_handler"].opt.get(REQUIRED_SCOPE)
        if required is None:
            if scope["method"] == HttpMethod.OPTIONS:
                # Litestar's automatic OPTIONS answers only the Allow header; CORS preflights carry no key.
                await self.app(scope, receive, send)
                return
            # Fail closed (create_app refuses such a route already; see check_routes_declare_scopes).
            raise RuntimeError(f"{scope['method']} {scope['path']} declares no {REQUIRED_SCOPE}")
        key = await self._key_of(scope["headers"])
        if key.scope < required:
            self.keys.metrics.failures["insufficient_scope"] += 1
            raise InsufficientScope(required.label)
        scope["state"]["key_id"] = key.id
        await self.app(scope, receive, send)

    async def _key_of(self, headers: Iterable[tuple[bytes, bytes]]) -> VerifiedKey:
        token = _bearer_token(headers)
        if token is None:
            self.keys.metrics.failures["missing"] += 1
            raise Unauthorized(key_sent=False)
        digest = key_hash(token)
        key = self.keys.cached(digest)
        if key is not None:
            return key
        if not looks_like_key(token):
            self.keys.metrics.failures["malformed"] += 1
            raise Unauthorized(key_sent=True)
        try:
            return await self.keys.verify(digest)
        except KeyRefused as refused:
            self.keys.metrics.failures[refused.reason] += 1
            raise Unauthorized(key_sent=True) from None


def _bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The credentials of `Authorization: Bearer <key>` (the scheme in any case), else None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
    return None


def check_routes_declare_scopes(app: Litestar) -> None:
    """Refuse to build an app in which a route behind `Authenticate` declares no scope."""
    for route in app.routes:
        for method, (handler, _) in getattr(route, "route_handler_map", {}).items():
            if method == HttpMethod.OPTIONS or not isinstance(handler, HTTPRouteHandler):
                continue
            behind_auth = any(
                getattr(m, "middleware", m) is Authenticate for m in handler.resolve_middleware()
            )
            if behind_auth and not isinstance(handler.opt.get(REQUIRED_SCOPE), Scope):
                raise RuntimeError(f"{method} {route.path} declares no {REQUIRED_SCOPE}")


def key_cache_of(request: Request[Any, Any, Any]) -> KeyCache:
    """The app's key cache (the revoking handler tells it at once)."""
    keys: KeyCache = request.app.state["key_cache"]
    return keys
