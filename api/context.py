"""What every resolver can reach: built per request from the process's services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from api.events import NotificationHub
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from api.transport.persisted_queries import PersistedQueries
from api.validation import Limits


@dataclass
class Services:
    """The long-lived parts of one API process, set up in the app's lifespan."""

    database: AsyncEngine
    pool: asyncpg.Pool
    """Plain asyncpg for the submit path: one statement, one round trip."""
    hub: NotificationHub
    settings: ApiSettings
    metrics: ApiMetrics
    persisted: PersistedQueries | None
    """Automatic persisted queries; None when turned off."""

    @property
    def limits(self) -> Limits:
        return Limits(
            max_moves_to_return=self.settings.max_moves_to_return,
            max_time_limit=self.settings.max_time_limit,
            max_depth_limit=self.settings.max_depth_limit,
        )


class Context(BaseContext):
    """Per-request context: the request (set by Strawberry) and the process's services."""

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.database = services.database
        self.pool = services.pool
        self.hub = services.hub
        self.settings = services.settings
        self.metrics = services.metrics
        self.limits = services.limits


ResolverInfo = Info[Context, None]


class SharedContext:
    """Strawberry views whose every request or connection gets its context from one
    getter: they all share the process's services."""

    _context_getter: Callable[[], Awaitable[Context]]

    async def get_context(self, request: object, response: object) -> Context:  # noqa: ARG002
        return await self._context_getter()
