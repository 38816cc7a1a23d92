"""What a WebSocket client sends, read and checked, and what it is answered when an
operation fails: the parts of `api.transport.websockets` that do not depend on the protocol's
state.

- A text message over the settings' limit closes the connection (1009) before it is
  decoded; one that is not JSON is handed on for the handler to answer.
- A message of the wrong form is described (`message_problem`) by the checks of the
  graphql-ws reference server, which Strawberry does not make.
- An error that escapes an operation's stream is answered with its code, as over HTTP
  (`answerable`), and an operation past the connection's limit is refused with one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Collection, Mapping
from typing import NamedTuple

from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.schema.schema import StreamResult
from strawberry.types.execution import ExecutionResult, PreExecutionError

from api import errors
from api.context import Context

BAD_REQUEST_CLOSE_CODE = 4400
"""The close code graphql-transport-ws uses for a malformed message."""


class Protocol(NamedTuple):
    """What a client may send over one protocol, and which messages start and stop an
    operation."""

    types: frozenset[str]
    start: str
    stop: str


TRANSPORT = Protocol(
    frozenset({"connection_init", "ping", "pong", "subscribe", "complete"}),
    "subscribe",
    "complete",
)


LEGACY = Protocol(
    frozenset({"connection_init", "connection_terminate", "start", "stop"}), "start", "stop"
)


MESSAGE_TOO_BIG_CLOSE_CODE = 1009
"""RFC 6455's code for a message too big to process (what uvicorn sends past its own
`ws_max_size`)."""


class NotJson:
    """Stands for a message that is not JSON, where the protocol answers it rather than
    closing the connection (`graphql-ws`)."""


NOT_JSON = NotJson()


class BoundedWebSocket(ASGIWebSocketAdapter):
    """Strawberry's ASGI WebSocket adapter, with two changes: a text message longer than
    `max_bytes` in UTF-8 closes the connection (1009) before it is decoded; one that is
    not JSON (or nests too deep to decode) is handed on as `NOT_JSON` where Strawberry
    would drop it in silence, for the handler to answer."""

    max_bytes: int | None = None
    """Set by the connection's handler from the settings; None: no bound."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                if self.max_bytes is not None and longer_than(text, self.max_bytes):
                    reason = f"message larger than {self.max_bytes} bytes"
                    await self.close(MESSAGE_TOO_BIG_CLOSE_CODE, reason)
                    return
                try:
                    decoded = self.view.decode_json(text)
                except (ValueError, RecursionError) as error:  # not JSON, or nested too deep
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from error
                    decoded = NOT_JSON  # for the handler to answer
                yield decoded
        except KeyError as error:  # a binary message: it has no "text"
            raise NonTextMessageReceived from error
        except WebSocketDisconnect:
            pass

    async def send_json(self, message: Mapping[str, object]) -> None:
        # After a close (a message too big, say), a send is the peer's loss, not an
        # error of the application: say so as Strawberry's handlers expect.
        if WebSocketState.DISCONNECTED in (self.ws.application_state, self.ws.client_state):
            raise WebSocketDisconnected
        try:
            await super().send_json(message)
        except RuntimeError as exc:  # how uvicorn refuses a send once it has closed
            raise WebSocketDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        # uvicorn may have closed the connection itself (a message too big): closing it
        # again is nothing to report.
        if WebSocketState.DISCONNECTED in (self.ws.application_state, self.ws.client_state):
            return
        with contextlib.suppress(RuntimeError):
            await super().close(code, reason)


def longer_than(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes in UTF-8 (encoded only when the
    count of characters cannot tell: one takes 1 to 4 bytes)."""
    if len(text) > limit:
        return True
    return len(text) * 4 > limit and len(text.encode()) > limit


def bound_messages(websocket: AsyncWebSocketAdapter, context: Context) -> None:
    """Apply the settings' message limit to a connection's adapter."""
    if isinstance(websocket, BoundedWebSocket):
        websocket.max_bytes = context.settings.ws_message_limit


async def next_result(results: StreamResult) -> ExecutionResult | None:
    """The next result of an operation's stream, None at its end. An exception raised by
    the stream itself becomes an error result, so that the client is answered."""
    try:
        result = await anext(results)
    except StopAsyncIteration:
        return None
    except Exception as error:
        return PreExecutionError(data=None, errors=[answerable(error)])
    if not isinstance(result, ExecutionResult):  # incremental delivery is switched off
        unsupported = GraphQLError("@defer and @stream are not supported over WebSockets")
        return PreExecutionError(data=None, errors=[answerable(unsupported)])
    return result


def answerable(error: Exception) -> GraphQLError:
    """The error to answer for one that escaped an operation's stream, and so missed the
    schema's error shaping: GraphQL's own errors (a document that does not parse, or has
    too many tokens) with their code, as over HTTP; anything else logged and masked."""
    if isinstance(error, GraphQLError) and not errors.raised_by_resolver(error):
        error.extensions = {**(error.extensions or {}), "code": errors.graphql_code(error)}
        return error
    wrapped = GraphQLError(str(error), original_error=error)
    errors.log_unexpected([wrapped], None)
    return errors.ShapeErrors().anonymise_error(wrapped)


def message_problem(message: object, protocol: Protocol) -> str | None:
    """What is wrong with the form of a client's message, if anything: the checks of the
    graphql-ws reference server. Strawberry reads these fields without checking them,
    and a wrong one crashed the connection or surfaced as an internal error. (The
    answer never quotes the message: a close reason must be short, valid UTF-8.)"""
    if isinstance(message, NotJson):
        return "a message must be JSON"
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be an object with a string type"
    if message["type"] not in protocol.types:
        return "unknown message type"
    start, stop = protocol.start, protocol.stop
    if message["type"] not in (start, stop):
        return None
    if not isinstance(message.get("id"), str) or not message["id"]:
        return f"{message['type']}: id must be a non-empty string"
    if message["type"] == stop:
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return f"{start}: payload must be an object"
    if not isinstance(payload.get("query"), str):
        return f"{start}: payload.query must be a string"
    for field, kind in (("variables", dict), ("operationName", str), ("extensions", dict)):
        if payload.get(field) is not None and not isinstance(payload[field], kind):
            expected = "an object" if kind is dict else "a string"
            return f"{start}: payload.{field} must be {expected} or null"
    return None


def over_the_limit(
    running: Collection[str], operation_id: str, limit: int | None
) -> GraphQLError | None:
    """The refusal of a new operation beyond the connection's `limit`, if it is one
    (Strawberry's own refusal has no code): the client may end another operation, or
    open another connection."""
    if limit is None or operation_id in running or len(running) < limit:
        return None
    return GraphQLError(
        f"Subscription limit reached: {limit} operations at once per connection",
        extensions={"code": "BAD_REQUEST"},
    )
