"""A request id for every HTTP request and WebSocket connection.

Taken from the client's `X-Request-ID` header when it is a sensible token, else made
up; sent back in the response's `X-Request-ID`, put on every log line written while
the request is served, and shown in masked errors so a report can be matched to the log.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime import logs

HEADER = b"x-request-id"
ACCEPTABLE = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


class RequestIds:
    """ASGI middleware that sets `runtime.logs.request_id` for the request's lifetime."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"")
        request_id = given.decode() if ACCEPTABLE.match(given) else uuid.uuid4().hex
        token = logs.request_id.set(request_id)
        try:
            if scope["type"] == "http":
                await self.app(scope, receive, _answering_with(request_id, send))
            else:
                await self.app(scope, receive, send)
        finally:
            logs.request_id.reset(token)


def _answering_with(request_id: str, send: Send) -> Send:
    """`send`, adding the request id to the response's headers."""

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (HEADER, request_id.encode())]
        await send(message)

    return send_with_id
