"""Limits on what a request may ask: document size and shape, body size, introspection.

The document limits are Strawberry validation rules, so they apply to every operation,
subscriptions over WebSocket included. The body limit is ASGI middleware: it refuses a
declared-too-large body at once and cuts off a streamed one as soon as it goes over.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from graphql import ASTValidationRule
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from api.settings import ApiSettings

ExtensionFactory = Callable[[], SchemaExtension]


def extensions(settings: ApiSettings) -> list[ExtensionFactory]:
    """Factories of the schema extensions that enforce `settings` (one set per operation).

    The depth and alias rules are made once here and shared by every operation:
    Strawberry's limiters make new rule classes per instance, and the validation cache,
    keyed on the rules, then never hits (validation was 44 % of a submission's CPU).
    """
    shared_rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_query_depth, None, None),
        alias_rule(settings.max_aliases),
    ]
    limits: list[ExtensionFactory] = [
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        partial(AddValidationRules, shared_rules),
        # Bounded LRU caches of parsed and validated documents, shared per size.
        partial(ParserCache, maxsize=settings.document_cache_size),
        partial(ValidationCache, maxsize=settings.document_cache_size),
    ]
    if not settings.introspection:
        limits.append(DisableIntrospection)
    return limits


DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
"""Past this much, a refused body is not read to its end: the connection is closed."""


class BodyTooLargeError(Exception):
    """The request body went past the limit while it was being read."""


class LimitBodySize:
    """Answer 413 to HTTP requests whose body is larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._drain(receive)
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await self._drain(receive)
                await self._refuse(send)

    @staticmethod
    async def _drain(receive: Receive) -> None:
        """Read and drop what the client still sends (up to a bound), so that it gets to
        read the 413 instead of finding the connection reset mid-upload."""
        drained = 0
        while drained < DRAIN_LIMIT_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, send: Send) -> None:
        body = (
            b'{"errors":[{"message":"request body larger than '
            + str(self.max_bytes).encode()
            + b' bytes","extensions":{"code":"PAYLOAD_TOO_LARGE"}}]}'
        )
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
