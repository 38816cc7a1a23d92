"""Strawberry's views: the FastAPI router for HTTP, a plain ASGI view for WebSockets,
with what Strawberry leaves open.

WebSockets are served by `WebSocketView`, which the application hands connections to
/graphql before FastAPI's routing and middleware: a subscriber then holds a handful of
coroutine frames for its connection instead of some thirty (a third of its memory).

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
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
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


class Counted:
    """Counts a connection in the `websocket_connections` gauge while entered (a plain
    object, not a generator: it lives as long as the connection)."""

    __slots__ = ("_metrics",)

    def __init__(self, view: Any) -> None:
        self._metrics: ApiMetrics | None = getattr(view, "metrics", None)

    def __enter__(self) -> None:
        if self._metrics is not None:
            self._metrics.websockets.inc()

    def __exit__(self, *_exc: object) -> None:
        if self._metrics is not None:
            self._metrics.websockets.dec()


class LegacyHandler(BaseGraphQLWSHandler[Context, None]):
    """`graphql-ws` that closes connections which never send `connection_init`."""

    async def handle(self) -> None:
        deadline = asyncio.create_task(self._close_unless_initialised())
        try:
            with Counted(self.view):
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
    """`graphql-transport-ws` with server pings on acknowledged connections.

    The pings run off a timer, not a task per connection: a connection that waits for
    one subscription then holds a timer handle instead of a task and its frames.
    """

    _ping_timer: asyncio.TimerHandle | None = None
    _sending_ping: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        with Counted(self.view):
            await super().handle()

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        # Strawberry cancels its init deadline but keeps the task, and with it the
        # CancelledError's traceback and frames, for the whole connection: a few KB
        # per subscriber. Let the cancellation land, then let go of the task.
        deadline, self.connection_init_timeout_task = self.connection_init_timeout_task, None
        if deadline is not None:
            deadline.cancel()
            await asyncio.wait({deadline})
        if self.connection_acknowledged and self._ping_timer is None:
            self._schedule_ping()

    async def shutdown(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self._sending_ping is not None:
            self._sending_ping.cancel()
            await asyncio.wait({self._sending_ping})
        await super().shutdown()

    def _schedule_ping(self) -> None:
        view: Any = self.view
        self._ping_timer = asyncio.get_running_loop().call_later(
            view.keep_alive_interval, self._ping
        )

    def _ping(self) -> None:
        if self._sending_ping is None or self._sending_ping.done():
            self._sending_ping = asyncio.create_task(self.send_message({"type": "ping"}))
            self._sending_ping.add_done_callback(_ignore_outcome)
        self._schedule_ping()


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    """A ping to a peer that has gone fails; the connection's own reader sees it end."""
    if not task.cancelled():
        task.exception()


class WebSocketView(GraphQL[Context, None]):
    """Subscriptions over WebSockets (both protocols), with the handlers above."""

    graphql_ws_handler_class = LegacyHandler
    graphql_transport_ws_handler_class = TransportHandler

    def __init__(
        self,
        *args: Any,
        context_getter: Callable[[], Awaitable[Context]],
        metrics: ApiMetrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._context_getter = context_getter
        self.metrics = metrics

    async def get_context(
        self,
        request: Request | WebSocket,  # noqa: ARG002 (every connection shares the services)
        response: Response | WebSocket,  # noqa: ARG002
    ) -> Context:
        return await self._context_getter()


class Router(GraphQLRouter[Context, None]):
    """Strawberry's FastAPI router for HTTP (queries, mutations, multipart
    subscriptions), and GraphiQL served from this server when its files are installed."""

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
