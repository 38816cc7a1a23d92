"""Strawberry's FastAPI router, with what it leaves open.

WebSockets:

- `graphql-ws` (legacy): a `connection_init` deadline, as Strawberry enforces on
  `graphql-transport-ws` only; Strawberry's own `ka` keep-alive is on.
- `graphql-transport-ws`: a server `ping` every keep-alive interval once the connection
  is acknowledged, so proxies do not close idle subscriptions and dead peers are found.

GraphiQL: served from this server's own files when they are installed (`api.ide`), and
shown to a browser that opens /graphql, `?query=` and all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from api import ide
from api.context import Context
from api.metrics import ApiMetrics

INIT_TIMEOUT_CLOSE_CODE = 4408
"""The close code graphql-transport-ws uses for a missing `connection_init`."""


@contextlib.contextmanager
def counted(view: Any) -> Iterator[None]:
    """Count the connection in the `websocket_connections` gauge while it is open."""
    metrics: ApiMetrics | None = getattr(view, "metrics", None)
    if metrics is None:
        yield
        return
    metrics.websockets.inc()
    try:
        yield
    finally:
        metrics.websockets.dec()


class LegacyHandler(BaseGraphQLWSHandler[Context, None]):
    """`graphql-ws` that closes connections which never send `connection_init`."""

    async def handle(self) -> None:
        deadline = asyncio.create_task(self._close_unless_initialised())
        try:
            with counted(self.view):
                await super().handle()
        finally:
            deadline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deadline

    async def _close_unless_initialised(self) -> None:
        view: Any = self.view
        await asyncio.sleep(view.connection_init_wait_timeout.total_seconds())
        if not self.connection_acknowledged:
            await self.websocket.close(
                code=INIT_TIMEOUT_CLOSE_CODE, reason="Connection initialisation timeout"
            )


class TransportHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """`graphql-transport-ws` with server pings on acknowledged connections."""

    _pinger: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        with counted(self.view):
            await super().handle()

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._pinger is None:
            self._pinger = asyncio.create_task(self._ping())

    async def shutdown(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        await super().shutdown()

    async def _ping(self) -> None:
        view: Any = self.view
        while True:
            await asyncio.sleep(view.keep_alive_interval)
            await self.send_message({"type": "ping"})


class Router(GraphQLRouter[Context, None]):
    """Strawberry's FastAPI router with the handlers above, and GraphiQL served from
    this server when its files are installed."""

    local_ide: bool = False

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A browser opening /graphql gets the IDE, with ?query= as its starting document
        # (GraphiQL's own convention), rather than the query's result.
        return bool(
            self.graphql_ide
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
        )

    @property
    def graphql_ide_html(self) -> str:
        if self.local_ide:
            return ide.page()
        html: str = super().graphql_ide_html
        return html

    graphql_ws_handler_class = LegacyHandler
    graphql_transport_ws_handler_class = TransportHandler
    metrics: ApiMetrics | None = None
