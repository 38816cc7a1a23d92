"""Limits on what a request may ask: document size and shape, body size, introspection.

The document limits are Strawberry validation rules, so they apply to every operation,
subscriptions over WebSocket included. The body limit is ASGI middleware: it refuses a
declared-too-large body at once and cuts off a streamed one as soon as it goes over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from graphql.validation import NoSchemaIntrospectionCustomRule
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.schema import validate_document

from api.settings import ApiSettings

ExtensionFactory = Callable[[], SchemaExtension]


@dataclass(frozen=True)
class DocumentLimits:
    """What a document may be: at most `max_tokens` tokens, and valid under `rules`
    (beyond the specification's own) for its depth, aliases and introspection."""

    max_tokens: int
    rules: tuple[type[ASTValidationRule], ...]


def document_limits(settings: ApiSettings) -> DocumentLimits:
    """The limits of `settings`, made once: Strawberry's own limiters make new rule
    classes per operation, and a validation cache keyed on the rules then never hits
    (validation was 44 % of a submission's CPU)."""
    rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_query_depth, None, None),
        alias_rule(settings.max_aliases),
    ]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return DocumentLimits(max_tokens=settings.max_tokens, rules=tuple(rules))


@lru_cache(maxsize=16)
def _caches(size: int) -> tuple[Callable[..., DocumentNode], Callable[..., list[GraphQLError]]]:
    """Bounded LRU caches of parsed and of validated documents, shared per size."""
    return lru_cache(maxsize=size)(parse), lru_cache(maxsize=size)(validate_document)


UNVALIDATABLE = (
    "the document cannot be validated: an empty selection set, or a literal beyond every range"
)


class Documents(SchemaExtension):
    """Parses and validates each operation's document within the limits, both cached.

    One extension where Strawberry would take four (a token limiter, added validation
    rules, a parser cache, a validation cache): each is a context manager entered and
    left for every operation, a sizeable part of a small request's time."""

    def __init__(self, limits: DocumentLimits, cache_size: int) -> None:
        self.limits = limits
        self._parse, self._validate = _caches(cache_size)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.graphql_document = self._parse(context.query, max_tokens=self.limits.max_tokens)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        rules = context.validation_rules + self.limits.rules
        try:
            errors = self._validate(schema_of(context.schema), context.graphql_document, rules)
            context.pre_execution_errors = [without_cause(error) for error in errors]
        except (ValueError, TypeError, RecursionError):
            # A document that parses yet breaks a rule's own code: an empty selection
            # set trips the depth rule, an integer literal of thousands of digits
            # Python's conversion. Refused like any document that does not validate.
            context.pre_execution_errors = [GraphQLError(UNVALIDATABLE)]
        yield


def without_cause(error: GraphQLError) -> GraphQLError:
    """A validation error as the client should see it. graphql-core wraps what a value's
    coercion raised (an integer literal of thousands of digits is beyond Python's
    conversion) as a validation error with that cause; the cause would have it masked
    as an internal error, where it is the document's fault."""
    if error.original_error is None or isinstance(error.original_error, GraphQLError):
        return error
    return GraphQLError(error.message, nodes=error.nodes, extensions=error.extensions)


def schema_of(schema: Any) -> GraphQLSchema:
    """The graphql-core schema behind a Strawberry one."""
    core: GraphQLSchema = schema._schema
    return core


def extensions(settings: ApiSettings) -> list[ExtensionFactory]:
    """Factories of the schema extensions that enforce `settings` (one per operation)."""
    return [partial(Documents, document_limits(settings), settings.document_cache_size)]


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
