"""Who is asking: the tenant behind a request's key, or the anonymous tenant.

Where a key travels (`db.tenants` makes and keeps them):

- HTTP, every request to /graphql (POST, GET, multipart subscriptions, persisted
  queries) and /metrics: the header `Authorization: Bearer <key>`;
- WebSocket, both protocols: the `connection_init` payload `{"authorization": "Bearer
  <key>"}` (Apollo's `connectionParams`), or else the upgrade request's header.

An empty value counts as no key. Without a key the caller is the anonymous tenant when
`API_ANONYMOUS` is on (its quotas from the settings, and at most
`API_ANONYMOUS_PER_ADDRESS_PER_MINUTE` submissions per client address), and is refused
with UNAUTHENTICATED when it is off; a key that is wrong, malformed or revoked is
refused either way. The transports refuse before any operation runs: HTTP 401 with
`WWW-Authenticate: Bearer`; on a WebSocket, close 4401 (graphql-transport-ws) or
`connection_error` then close (graphql-ws).

A looked-up key is trusted for `API_KEY_CACHE_SECONDS` (unknown keys too, so guessing
costs the database nothing), and an open WebSocket's key is looked up again as often
(`OpenSockets`), so a revoked key stops working within about that long everywhere.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import asyncpg
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Scope

from api.errors import ForbiddenError, UnauthenticatedError
from api.settings import ApiSettings
from db import tenants
from db.errors import TransientDatabaseError
from db.tenants import Tenant

log = logging.getLogger(__name__)

SCHEME = "bearer"
KEY_NEEDED = "an API key is needed: send `Authorization: Bearer <key>`"
KEY_NEEDED_ON_WEBSOCKET = (
    'an API key is needed: send {"authorization": "Bearer <key>"} as the connection_init payload'
)
NOT_BEARER = "send the key as `Authorization: Bearer <key>`"
UNKNOWN_KEY = "the API key is not valid (unknown or revoked)"
REVOKED = "the API key was revoked"
ADMIN_NEEDED = "this needs a key with the admin scope"
DATABASE_AWAY = "the database is unavailable; retry shortly"
REALM = 'Bearer realm="chess-analysis"'
"""The challenge of `WWW-Authenticate` (RFC 6750): to a request without a key as it is;
with `error="invalid_request"` to one whose Authorization is not `Bearer <key>`,
`error="invalid_token"` to one with a key that does not work, and
`error="insufficient_scope"` to one whose key lacks the scope."""


def secret_of(authorization: str | None) -> str | None:
    """The key in an Authorization value (`Bearer <key>`, the scheme in any case); None
    for no value or an empty one. UnauthenticatedError for any other form."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != SCHEME or not secret or " " in secret:
        raise UnauthenticatedError(NOT_BEARER)
    return secret


def connection_authorization(payload: object) -> str | None:
    """The Authorization value a WebSocket client put in its `connection_init` payload
    (`authorization`, in any case); None when it put none."""
    if not isinstance(payload, Mapping):
        return None
    for name, value in payload.items():
        if isinstance(name, str) and name.lower() == "authorization":
            if value is None:
                return None
            if not isinstance(value, str):
                raise UnauthenticatedError(NOT_BEARER)
            return value
    return None


def client_address(scope: Scope, forwarded_for_header: str | None) -> str | None:
    """The client's address: the last entry of `forwarded_for_header` (what the trusted
    proxy in front appended) when that is set and present, else the peer's."""
    if forwarded_for_header is not None:
        values = Headers(scope=scope).getlist(forwarded_for_header)
        if values:
            last = values[-1].split(",")[-1].strip()
            if last:
                return last
    client = scope.get("client")
    return None if client is None else str(client[0])


def anonymous_tenant(settings: ApiSettings) -> Tenant:
    """The anonymous tenant, with the quotas of `settings`."""
    return Tenant(
        id=tenants.ANONYMOUS_ID,
        name="anonymous",
        scopes=frozenset({tenants.ANALYSE}),
        quotas=tenants.Quotas(
            max_queued=settings.anonymous_max_queued,
            engine_seconds_per_hour=settings.anonymous_engine_seconds_per_hour,
        ),
    )


class Keys:
    """Tenants by key, looked up in the database and trusted for `cache_seconds`.

    The cache holds at most `MAX_CACHED` keys (the least recently looked up go first),
    unknown ones included; lookups of one key at once share one query.
    """

    MAX_CACHED = 10_000

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: ApiSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self.cache_seconds = settings.key_cache_seconds
        self.anonymous = anonymous_tenant(settings) if settings.anonymous else None
        """The tenant of requests without a key; None when they are refused."""
        self._clock = clock
        self._cached: collections.OrderedDict[str, tuple[float, Tenant | None]] = (
            collections.OrderedDict()
        )
        self._looking_up: dict[str, asyncio.Task[Tenant | None]] = {}

    async def identify(self, secret: str | None, missing: str = KEY_NEEDED) -> Tenant:
        """The tenant of the key `secret`, or the anonymous one for none.

        UnauthenticatedError (saying `missing` for no key) for no key when anonymous use
        is off, and for an unknown or revoked key; TransientDatabaseError when the key
        cannot be looked up now.
        """
        if secret is None:
            if self.anonymous is None:
                raise UnauthenticatedError(missing)
            return self.anonymous
        tenant = await self.tenant(secret)
        if tenant is None:
            raise UnauthenticatedError(UNKNOWN_KEY)
        return tenant

    async def tenant(self, secret: str, *, fresh: bool = False) -> Tenant | None:
        """The tenant of `secret`; None for an unknown or revoked one. From the cache
        unless the entry is older than `cache_seconds` or `fresh` is asked for."""
        now = self._clock()
        cached = self._cached.get(secret)
        if cached is not None and not fresh and now - cached[0] < self.cache_seconds:
            return cached[1]
        lookup = self._looking_up.get(secret)
        if lookup is None:
            lookup = asyncio.create_task(self._look_up(secret))
            self._looking_up[secret] = lookup
            lookup.add_done_callback(functools.partial(self._looked_up, secret))
        try:
            # Shielded: one caller going away does not cancel the others' lookup.
            return await asyncio.shield(lookup)
        except TransientDatabaseError:
            if cached is None:
                raise
            # The database is away: what it said last stands until it is back (the
            # request itself then meets the outage, and says so).
            return cached[1]

    def _looked_up(self, secret: str, lookup: asyncio.Task[Tenant | None]) -> None:
        del self._looking_up[secret]
        if not lookup.cancelled():
            lookup.exception()  # retrieved: each waiter has it raised already

    async def _look_up(self, secret: str) -> Tenant | None:
        found = await tenants.by_secret(self._pool, secret)
        self._cached[secret] = (self._clock(), found)
        self._cached.move_to_end(secret)
        while len(self._cached) > self.MAX_CACHED:
            self._cached.popitem(last=False)
        return found


def unauthenticated(message: str, media_type: str = "application/json") -> JSONResponse:
    """The HTTP answer to a request without a usable key: 401 with a Bearer challenge."""
    challenge = CHALLENGES.get(message, REALM + ', error="invalid_token"')
    return _refusal(401, UnauthenticatedError.code, message, media_type, challenge)


CHALLENGES = {
    KEY_NEEDED: REALM,
    KEY_NEEDED_ON_WEBSOCKET: REALM,
    NOT_BEARER: REALM + ', error="invalid_request"',
}
INSUFFICIENT = REALM + ', error="insufficient_scope", scope="admin"'


def _refusal(status: int, code: str, message: str, media_type: str, challenge: str) -> JSONResponse:
    error = {"message": message, "extensions": {"code": code}}
    headers = {"www-authenticate": challenge}
    return JSONResponse({"errors": [error]}, status, headers=headers, media_type=media_type)


async def admin_refusal(keys: Keys, authorization: str | None) -> JSONResponse | None:
    """The refusal of a request that needs an admin key (401 without a usable key, 403
    with a key that is not admin); None when the key is an admin's."""
    try:
        secret = secret_of(authorization)
        tenant = None if secret is None else await keys.tenant(secret)
    except UnauthenticatedError as refusal:
        return unauthenticated(str(refusal))
    except TransientDatabaseError:
        error = {"message": DATABASE_AWAY, "extensions": {"code": "SERVICE_UNAVAILABLE"}}
        return JSONResponse({"errors": [error]}, 503, headers={"retry-after": "1"})
    if tenant is None:
        return unauthenticated(KEY_NEEDED if secret is None else UNKNOWN_KEY)
    if not tenant.is_admin:
        return _refusal(403, ForbiddenError.code, ADMIN_NEEDED, "application/json", INSUFFICIENT)
    return None


class AddressLimit:
    """At most `per_minute` events per client address in any 60 s, counted in this
    process (a sliding window: the times of the last `per_minute` events per address)."""

    WINDOW_SECONDS = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._events: dict[str, collections.deque[float]] = {}
        self._next_prune = 0.0

    def take(self, address: str | None) -> float | None:
        """Count one event of `address`; None when it is within the limit, else the
        seconds until it would be (and it is not counted)."""
        now = self._clock()
        self._prune(now)
        key = address or "unknown"
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = collections.deque(maxlen=self.per_minute)
        while events and now - events[0] >= self.WINDOW_SECONDS:
            events.popleft()
        if len(events) >= self.per_minute:
            return events[0] + self.WINDOW_SECONDS - now
        events.append(now)
        return None

    def _prune(self, now: float) -> None:
        """Forget the addresses with no event in the window, once a window: the map
        holds only addresses seen lately, however many come and go."""
        if now < self._next_prune:
            return
        self._next_prune = now + self.WINDOW_SECONDS
        stale = [
            address
            for address, events in self._events.items()
            if not events or now - events[-1] >= self.WINDOW_SECONDS
        ]
        for address in stale:
            del self._events[address]


Close = Callable[[], Awaitable[None]]
"""Closes one WebSocket whose key no longer works."""


class OpenSockets:
    """The open WebSockets that came with a key, and the watch that closes those whose
    key is revoked: every `interval` seconds each key in use is looked up afresh (once,
    however many connections share it), so that an open connection stops working
    within about `interval` of the revocation. One task per process, and no timer per
    connection."""

    def __init__(self, keys: Keys, interval: float) -> None:
        self._keys = keys
        self.interval = interval
        self._by_secret: dict[str, set[Close]] = {}

    def __len__(self) -> int:
        return sum(len(closers) for closers in self._by_secret.values())

    def enter(self, secret: str, close: Close) -> None:
        """Call `close` once `secret` is found revoked (until `forget`)."""
        self._by_secret.setdefault(secret, set()).add(close)

    def forget(self, secret: str, close: Close) -> None:
        closers = self._by_secret.get(secret)
        if closers is not None:
            closers.discard(close)
            if not closers:
                del self._by_secret[secret]

    async def watch(self) -> None:
        """Re-check the keys in use every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> None:
        """Look up every key in use afresh; close the connections of those revoked. A
        key that cannot be looked up now (the database is away) is trusted as before."""
        for secret in list(self._by_secret):
            try:
                tenant = await self._keys.tenant(secret, fresh=True)
            except TransientDatabaseError:
                continue
            except Exception:
                log.exception("checking an open WebSocket's key failed")
                continue
            if tenant is None:
                closers = self._by_secret.pop(secret, set())
                await asyncio.gather(*(close() for close in closers), return_exceptions=True)
