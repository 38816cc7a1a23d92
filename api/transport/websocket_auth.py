"""Authentication of WebSocket connections, on either protocol: who the client is at
`connection_init` (the payload's `authorization`, else the upgrade request's
`Authorization` header, checked by `api.auth` before the connection is acknowledged),
how a connection without a usable key is refused (closed with 4401 on
`graphql-transport-ws`; answered `connection_error` and closed on `graphql-ws`; 1013 when
the key cannot be looked up), and the watch that closes an acknowledged connection once
its key is found revoked (`api.auth.OpenSockets`). The view and handlers in
`api.transport.websockets` call on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionErrorMessage
from strawberry.types.unset import UNSET, UnsetType

from api import auth
from api.context import Context, SharedContext
from api.errors import ClientError, ServiceUnavailableError, UnauthenticatedError
from db.errors import TransientDatabaseError

UNAUTHORIZED_CLOSE_CODE = 4401
"""The close code graphql-transport-ws uses for a client that may not go on."""

TRY_AGAIN_LATER_CLOSE_CODE = 1013
"""RFC 6455's code for a server that cannot serve now: the key could not be looked up."""


async def init_refusal(init: Awaitable[None]) -> tuple[ClientError, int] | None:
    """Await Strawberry's `connection_init` handling (which calls `on_ws_connect`): the
    refusal to send and the close code if the client may not go on, else None."""
    try:
        await init
    except UnauthenticatedError as refusal:
        return refusal, UNAUTHORIZED_CLOSE_CODE
    except TransientDatabaseError:
        return ServiceUnavailableError(auth.DATABASE_AWAY), TRY_AGAIN_LATER_CLOSE_CODE
    return None


async def refuse_legacy(
    handler: BaseGraphQLWSHandler[Context, None],
    refusal: ClientError,
    code: int = UNAUTHORIZED_CLOSE_CODE,
) -> None:
    """`connection_error` with the refusal as a GraphQL error, then close (`graphql-ws`)."""
    handler.connection_acknowledged = False
    message: ConnectionErrorMessage = {
        "type": "connection_error",
        "payload": {"message": str(refusal), "extensions": refusal.extensions},
    }
    with contextlib.suppress(WebSocketDisconnected):
        await handler.send_message(message)
    await handler.websocket.close(code, str(refusal))


class WatchesKey:
    """Closes an acknowledged connection once its key is revoked: the key is held in
    the process's `api.auth.OpenSockets` while the connection lasts."""

    __slots__ = ()  # the key is the context's; nothing of its own per connection

    context: Context

    def _hold_key(self) -> None:
        """Have the connection closed (`_revoked`) if its key is revoked."""
        if self.context.secret is not None:
            self.context.sockets.enter(self.context.secret, self._revoked)

    def _release_key(self) -> None:
        if self.context.secret is not None:
            self.context.sockets.forget(self.context.secret, self._revoked)

    async def _revoked(self) -> None:
        """Tell the client its key was revoked, and close."""
        raise NotImplementedError


class IdentifiesAtInit(SharedContext):
    """The view's part: the upgrade request kept in the context, and the client
    identified at `connection_init` (`on_ws_connect`)."""

    async def get_context(self, request: HTTPConnection, response: object) -> Context:
        context = await super().get_context(request, response)
        if isinstance(request, WebSocket):
            context.request = request  # for its Authorization header, read at connection_init
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType:
        """Identify the client at `connection_init`, before it is acknowledged: by the
        payload's `authorization`, else by the upgrade request's `Authorization`.
        UnauthenticatedError or TransientDatabaseError refuse it (the handlers close)."""
        authorization = auth.connection_authorization(context.connection_params)
        if not authorization and context.request is not None:
            authorization = context.request.headers.get("authorization")
        await context.identify(authorization, auth.KEY_NEEDED_ON_WEBSOCKET)
        acknowledged: UnsetType = UNSET  # a plain `connection_ack`, without a payload
        return acknowledged
