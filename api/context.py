"""What every resolver can reach: built per request from the process's services, with
who is asking (`api.auth`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from api import auth
from api.errors import UnauthenticatedError
from api.events import NotificationHub
from api.metrics import ApiMetrics
from api.progress_board import ProgressBoard
from api.settings import ApiSettings
from api.transport.persisted_queries import PersistedQueries
from api.validation import Limits
from db.tenants import Tenant


@dataclass
class Services:
    """The long-lived parts of one API process, set up in the app's lifespan."""

    database: AsyncEngine
    pool: asyncpg.Pool
    """Plain asyncpg for the submit path: one statement, one round trip."""
    hub: NotificationHub
    progress: ProgressBoard
    """The progress of the searches this process's clients follow."""
    settings: ApiSettings
    metrics: ApiMetrics
    persisted: PersistedQueries | None
    """Automatic persisted queries; None when turned off."""
    keys: auth.Keys
    """Who a key belongs to (cached)."""
    sockets: auth.OpenSockets
    """The WebSockets open with a key, closed when it is revoked."""
    anonymous_limit: auth.AddressLimit
    """Submissions per client address without a key."""

    @property
    def limits(self) -> Limits:
        return Limits(
            max_moves_to_return=self.settings.max_moves_to_return,
            max_time_limit=self.settings.max_time_limit,
            max_depth_limit=self.settings.max_depth_limit,
            max_nodes_limit=self.settings.max_nodes_limit,
        )


class Context(BaseContext):
    """Per-request (or per-connection) context: the process's services and who asks.

    `identify` sets who asks before any operation runs: the HTTP view for each request,
    the WebSocket handlers at `connection_init`."""

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.database = services.database
        self.pool = services.pool
        self.hub = services.hub
        self.progress = services.progress
        self.settings = services.settings
        self.metrics = services.metrics
        self.limits = services.limits
        self.keys = services.keys
        self.sockets = services.sockets
        self.anonymous_limit = services.anonymous_limit
        self.address: str | None = None
        """The client's address (`api.auth.client_address`)."""
        self.secret: str | None = None
        """The key the caller came with; None for the anonymous tenant."""
        self.viewer: Tenant | None = None
        """Who asks; None until identified."""

    def note_address(self, connection: HTTPConnection) -> None:
        """Take the client's address from the request or WebSocket handshake."""
        self.address = auth.client_address(connection.scope, self.settings.forwarded_for_header)

    async def identify(self, authorization: str | None, missing: str = auth.KEY_NEEDED) -> Tenant:
        """Identify the caller by an Authorization value (`Bearer <key>`, or none).

        UnauthenticatedError when that is not allowed (`missing` says how to send a key
        when none came); TransientDatabaseError when the key cannot be looked up now."""
        secret = auth.secret_of(authorization)
        tenant = await self.keys.identify(secret, missing)
        self.secret, self.viewer = secret, tenant
        return tenant

    @property
    def tenant(self) -> Tenant:
        """Who asks. The transports identify the caller before an operation runs, so a
        resolver always finds one; UnauthenticatedError otherwise."""
        if self.viewer is None:
            raise UnauthenticatedError(auth.KEY_NEEDED)
        return self.viewer


ResolverInfo = Info[Context, None]


class SharedContext:
    """Strawberry views whose every request or connection gets its context from one
    getter: they all share the process's services. The client's address is noted; who
    the client is, each view finds out itself."""

    _context_getter: Callable[[], Awaitable[Context]]

    async def get_context(self, request: HTTPConnection, response: object) -> Context:  # noqa: ARG002
        context = await self._context_getter()
        context.note_address(request)
        return context
