"""GraphQL over WebSockets: Strawberry's view and handlers, with what Strawberry leaves open.

`WebSocketView` serves both subprotocols; the application hands it connections to
/graphql before FastAPI's routing and middleware, so a subscriber holds a handful of
coroutine frames for its connection instead of some thirty (a third of its memory).

Every connection, on either protocol:

- is closed (4408) if it sends no `connection_init` in time (Strawberry does this on
  `graphql-transport-ws` only);
- is identified at `connection_init` (`api.auth`: the payload's `authorization`, else
  the upgrade request's `Authorization` header) before it is acknowledged: without a
  usable key it is closed with 4401 (`graphql-transport-ws`) or answered
  `connection_error` and closed (`graphql-ws`), and no operation runs. One opened with a
  key is closed the same way once the key is found revoked (`api.auth.OpenSockets`);
- is closed (1009, message too big) by a message over `ApiSettings.ws_message_limit`
  bytes, before the message is decoded;
- has every operation answered: results, then `complete`; or an `error` with GraphQL
  errors that carry `extensions.code`, whatever stopped the operation. Strawberry lets
  an error raised while parsing (by its parser cache, which also enforces the token
  limit) escape the result stream: it answered such a document with a bare `complete`
  on `graphql-transport-ws` and with nothing at all on `graphql-ws`;
- runs queries and mutations as well as subscriptions, as both protocols allow;
- is closed (1000) once initialised if it holds no operation for
  `ApiSettings.ws_idle_timeout` seconds (checked at each keep-alive): a connection that
  does not subscribe costs memory and a file descriptor for nothing.

Keep-alive: Strawberry's `ka` messages on `graphql-ws` (one loop per connection,
however many times it sends `connection_init`); a server `ping` every interval
on acknowledged `graphql-transport-ws` connections, off an event loop timer rather than
a task per connection, so proxies do not close idle subscriptions and dead peers are
found.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.asgi import GraphQL
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.http.exceptions import (
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    OperationMessage,
    StartMessage,
)
from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from api import auth
from api.context import Context
from api.errors import UnauthenticatedError
from api.metrics import ApiMetrics
from api.transport.websocket_auth import (
    UNAUTHORIZED_CLOSE_CODE,
    IdentifiesAtInit,
    WatchesKey,
    init_refusal,
    refuse_legacy,
)
from api.transport.websocket_messages import (
    BAD_REQUEST_CLOSE_CODE,
    LEGACY,
    TRANSPORT,
    BoundedWebSocket,
    answerable,
    bound_messages,
    message_problem,
    next_result,
    over_the_limit,
)

INIT_TIMEOUT_CLOSE_CODE = 4408
"""The close code graphql-transport-ws uses for a missing `connection_init`."""


IDLE_CLOSE_CODE = 1000
"""RFC 6455's normal closure: the connection has nothing left to do. Not 4408 (that
means "no connection_init" in graphql-transport-ws) nor another 44xx code: graphql-ws
clients treat most of those as fatal and stop reconnecting, while after a 1000 a lazy
client simply connects again for its next subscription."""


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


class ClosesWhenIdle:
    """Closes an initialised connection that has held no operation for the settings'
    `ws_idle_timeout` seconds. The check runs at each keep-alive (the ping timer, the
    `ka` loop): a connection holds a timestamp for it, and no timer or task of its own."""

    # A slot, not an attribute: as one more key in the handler's __dict__ it measured
    # 0.7 KB more per subscriber (bench.fanout, 5,000 subscribers); as a slot, nothing.
    __slots__ = ("_idle_since",)

    websocket: AsyncWebSocketAdapter
    context: Context
    _idle_since: float | None
    """When the connection last became idle (monotonic); None while an operation runs
    and before it is initialised."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_since = None

    def _busy(self) -> bool:
        """Whether the connection runs an operation."""
        raise NotImplementedError

    def _note_operations(self) -> None:
        """Note that an operation started or ended: idle from now if none runs."""
        self._idle_since = None if self._busy() else time.monotonic()

    def _idle_too_long(self) -> bool:
        timeout = self.context.settings.ws_idle_timeout
        return (
            timeout > 0
            and self._idle_since is not None
            and not self._busy()
            and time.monotonic() - self._idle_since >= timeout
        )

    async def _close_idle(self) -> None:
        timeout = self.context.settings.ws_idle_timeout
        await self.websocket.close(IDLE_CLOSE_CODE, f"no operation in {timeout:g} s")


class LegacyHandler(WatchesKey, ClosesWhenIdle, BaseGraphQLWSHandler[Context, None]):
    """`graphql-ws` (subscriptions-transport-ws) with the rules of this module."""

    async def handle(self) -> None:
        bound_messages(self.websocket, self.context)
        deadline = asyncio.create_task(self._close_unless_initialised())
        try:
            with Counted(self.view):
                await super().handle()
        finally:
            deadline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deadline
            self._release_key()

    async def _close_unless_initialised(self) -> None:
        view: Any = self.view
        await asyncio.sleep(view.connection_init_wait_timeout.total_seconds())
        if not self.connection_acknowledged:
            await self.websocket.close(
                code=INIT_TIMEOUT_CLOSE_CODE, reason="Connection initialisation timeout"
            )

    async def handle_message(self, message: OperationMessage) -> None:
        """Answer a malformed message with an `error` (the protocol closes nothing for
        it), and an unknown type too, as subscriptions-transport-ws's server does."""
        problem = message_problem(message, LEGACY)
        if problem is None:
            await super().handle_message(message)
            return
        message_id = message.get("id") if isinstance(message, dict) else None
        await self.websocket.send_json(
            {
                "type": "error",
                "id": message_id if isinstance(message_id, str) else None,
                "payload": {"message": problem, "extensions": {"code": "BAD_REQUEST"}},
            }
        )

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        """Strawberry's, identifying the client first (`IdentifiesAtInit.on_ws_connect`),
        with one keep-alive loop per connection: Strawberry starts one at each
        `connection_init` and leaves the earlier ones running, owned by nobody, until the
        client goes (a task more for each repeated init)."""
        running = self.keep_alive_task
        self._release_key()  # a repeated init may come with another key
        refused = await init_refusal(super().handle_connection_init(message))
        if refused is not None:
            await refuse_legacy(self, *refused)
            return
        if running is not None and self.keep_alive_task is not running:
            running.cancel()
            await asyncio.wait({running})
            _ignore_outcome(running)
        if self.connection_acknowledged:
            self._note_operations()
            self._hold_key()

    async def _revoked(self) -> None:
        await refuse_legacy(self, UnauthenticatedError(auth.REVOKED))

    async def handle_keep_alive(self) -> None:
        """Strawberry's `ka` loop, which also closes the connection once idle too long."""
        assert self.keep_alive_interval
        while not self._idle_too_long():
            await self.send_message({"type": "ka"})
            await asyncio.sleep(self.keep_alive_interval)
        await self._close_idle()

    async def handle_start(self, message: StartMessage) -> None:
        refusal = over_the_limit(self.tasks, message["id"], self.max_subscriptions_per_connection)
        if refusal is not None and self.connection_acknowledged:
            payload = refusal.formatted
            await self.send_message({"type": "error", "id": message["id"], "payload": payload})
            return
        await super().handle_start(message)
        self._note_operations()

    async def cleanup_operation(self, operation_id: str) -> None:
        await super().cleanup_operation(operation_id)
        self._note_operations()

    def _busy(self) -> bool:
        return bool(self.tasks)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """Run one operation: `data` for each result, then `complete`; or one `error`
        when it cannot run (the protocol's error payload is one GraphQL error: the
        first). `stop` ends it with `complete`, as Strawberry does."""
        try:
            results = await self.schema.stream(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = results
            async with aclosing(results):
                while (result := await next_result(results)) is not None:
                    if isinstance(result, PreExecutionError):
                        assert result.errors
                        payload = result.errors[0].formatted
                        await self.send_message(
                            {"type": "error", "id": operation_id, "payload": payload}
                        )
                        return
                    await self.send_data_message(result, operation_id)
            await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:
            with contextlib.suppress(WebSocketDisconnected):  # the client may be gone
                await self.send_message({"type": "complete", "id": operation_id})
        except WebSocketDisconnected:
            pass  # the client has gone: nobody to answer
        finally:
            # Over, however it ended: it no longer counts towards the connection's
            # subscription limit, and its id may be used again.
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)
            self._note_operations()


class TransportHandler(WatchesKey, ClosesWhenIdle, BaseGraphQLTransportWSHandler[Context, None]):
    """`graphql-transport-ws` with the rules of this module, and server pings on
    acknowledged connections."""

    _ping_timer: asyncio.TimerHandle | None = None
    _sending_ping: asyncio.Task[None] | None = None
    _closing: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        bound_messages(self.websocket, self.context)
        try:
            with Counted(self.view):
                await super().handle()
        finally:
            self._release_key()

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Strawberry's, identifying the client first (`IdentifiesAtInit.on_ws_connect`)."""
        refused = await init_refusal(super().handle_connection_init(message))
        if refused is not None:
            refusal, code = refused
            await self.websocket.close(code, str(refusal))
        # Strawberry cancels its init deadline but keeps the task, and with it the
        # CancelledError's traceback and frames, for the whole connection: a few KB
        # per subscriber. Let the cancellation land, then let go of the task.
        deadline, self.connection_init_timeout_task = self.connection_init_timeout_task, None
        if deadline is not None:
            deadline.cancel()
            await asyncio.wait({deadline})
        if self.connection_acknowledged and self._ping_timer is None:
            self._note_operations()
            self._schedule_ping()
            self._hold_key()

    async def _revoked(self) -> None:
        await self.websocket.close(UNAUTHORIZED_CLOSE_CODE, auth.REVOKED)

    async def handle_message(self, message: Message) -> None:
        """Close the connection (4400) on a malformed message, as the protocol says."""
        problem = message_problem(message, TRANSPORT)
        if problem is None:
            await super().handle_message(message)
        else:
            await self.websocket.close(code=BAD_REQUEST_CLOSE_CODE, reason=problem)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        refusal = over_the_limit(
            self.operations, message["id"], self.max_subscriptions_per_connection
        )
        if refusal is not None and self.connection_acknowledged:
            payload = [refusal.formatted]
            await self.send_message({"type": "error", "id": message["id"], "payload": payload})
            return
        await super().handle_subscribe(message)
        self._note_operations()

    def forget_id(self, id: str) -> None:
        super().forget_id(id)
        self._note_operations()

    async def cleanup_operation(self, operation_id: str) -> None:
        await super().cleanup_operation(operation_id)
        self._note_operations()

    def _busy(self) -> bool:
        return bool(self.operations)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Run one operation: `next` for each result, then `complete`; or `error` with
        its GraphQL errors when it cannot run, whatever stopped it. Strawberry closes
        the whole connection (4400) for a document that does not parse; here it is one
        operation's error, as for any other invalid document."""
        try:
            results = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(results):
                while (result := await next_result(results)) is not None:
                    if isinstance(result, PreExecutionError):
                        await operation.send_initial_errors(result.errors or [])
                        return
                    await operation.send_next(result)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except WebSocketDisconnected:
            self._forget(operation)  # the client has gone: nobody to answer
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_initial_errors([answerable(error)])
            self._forget(operation)

    def _forget(self, operation: Operation[Context, None]) -> None:
        if self.operations.get(operation.id) is operation:
            self.forget_id(operation.id)

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
        if self._idle_too_long():
            self._closing = asyncio.create_task(self._close_idle())
            self._closing.add_done_callback(_ignore_outcome)
            return  # no more pings: the connection is closing
        if self._sending_ping is None or self._sending_ping.done():
            self._sending_ping = asyncio.create_task(self.send_message({"type": "ping"}))
            self._sending_ping.add_done_callback(_ignore_outcome)
        self._schedule_ping()


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    """A message to a peer that has gone fails; the connection's own reader sees it end."""
    if not task.cancelled():
        task.exception()


class WebSocketView(IdentifiesAtInit, GraphQL[Context, None]):
    """Subscriptions (and any other operation) over WebSockets, both protocols, with the
    handlers above."""

    graphql_ws_handler_class = LegacyHandler
    graphql_transport_ws_handler_class = TransportHandler
    websocket_adapter_class = BoundedWebSocket

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
