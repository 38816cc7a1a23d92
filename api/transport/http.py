"""GraphQL over HTTP: Strawberry's ASGI view with the hooks this service needs.

The application hands HTTP requests for /graphql to this view before FastAPI's routing
and middleware (as it hands it WebSockets), so a request is parsed once, executed, and
its answer encoded once. Strawberry's own view answers every GraphQL request with
`application/json` and status 200 and refuses malformed requests in plain text; here:

- a client that accepts `application/graphql-response+json` (Apollo Client 4 does) gets
  it, with status 400 for a request error (no `data`: the document does not parse or
  validate); the others get `application/json`, always with status 200;
- every refusal is a JSON GraphQL error with `extensions.code`: a mutation or
  subscription over GET is 405 with `Allow: POST`, a body that is not JSON 415, a body
  that does not parse (or nests too deep, or carries text that is not Unicode) 400;
- automatic persisted queries (`api.transport.persisted_queries`) are resolved over GET and POST;
- a browser's GET (it accepts text/html) gets GraphiQL, with `?query=` as its document;
- every other request is identified by its `Authorization: Bearer <key>` header
  (`api.auth`) before its body is read: without a usable key it is refused with 401,
  `WWW-Authenticate: Bearer` and UNAUTHENTICATED.

Streaming answers (multipart subscriptions) are Strawberry's own.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.types import ExecutionResult

from api import auth
from api.context import Context, SharedContext
from api.errors import UnauthenticatedError
from api.transport import ide
from api.transport.persisted_queries import PersistedQueries, sha256
from db.errors import TransientDatabaseError

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
MAX_JSON_DEPTH = 64
"""Nesting a request body may have (a GraphQL request needs a handful of levels)."""
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
"""A JSON escape of a UTF-16 surrogate: the body may carry text that is not Unicode."""
STATUS_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
ALLOW_POST = {"allow": "POST"}


class RequestError(Exception):
    """A request refused before it reaches GraphQL."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


class PersistedQueryNotFoundError(RequestError):
    """The client sent a hash the server does not know: it should send the document."""

    def __init__(self) -> None:
        super().__init__(200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")


def response_type(accept: str) -> str:
    """`application/graphql-response+json` if the client accepts it at least as well as
    `application/json`, else `application/json` (also for no Accept header at all)."""
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (item.strip() for item in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    best_json = max(quality.get(JSON, 0.0), quality.get("*/*", 0.0) * 0.5)
    if quality.get(GRAPHQL_RESPONSE, 0.0) > 0 and quality[GRAPHQL_RESPONSE] >= best_json:
        return GRAPHQL_RESPONSE
    return JSON


STREAMS_SUBSCRIPTIONS_ONLY = (
    "`Accept: multipart/mixed;subscriptionSpec=1.0` is for subscriptions: send queries and"
    " mutations with `Accept: application/json`"
)
NO_QUERY = "no GraphQL query in the request: send `query`, or a persisted query's hash"
SUBSCRIPTIONS_HERE = (
    "subscriptions are served over a WebSocket (graphql-transport-ws or graphql-ws) or over"
    " HTTP POST with `Accept: multipart/mixed;subscriptionSpec=1.0`"
)


@functools.lru_cache(maxsize=128)
def operation_type(
    query: str, operation_name: str | None, max_tokens: int
) -> OperationType | GraphQLError | None:
    """The type of the operation a request would run; the syntax error when the document
    does not parse; None when it names no such operation (the GraphQL layer then says so).
    Cached: a client sends the same few documents again and again."""
    try:
        operation = get_operation_ast(parse(query, max_tokens=max_tokens), operation_name)
    except GraphQLError as exc:
        return exc
    return None if operation is None else operation.operation


class GraphQLOverHTTP(SharedContext, GraphQL[Context, None]):
    """Queries, mutations and multipart subscriptions over HTTP; see the module docstring."""

    local_ide: bool = False

    def __init__(
        self,
        *args: Any,
        context_getter: Callable[[], Awaitable[Context]],
        persisted: Callable[[], PersistedQueries | None],
        max_tokens: int = 100_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._context_getter = context_getter
        self._persisted = persisted
        self._max_tokens = max_tokens
        """The schema's token limit: a stream refuses a longer document before it begins."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.run(request, context=await self._identified(request))
        except ClientDisconnect:
            return  # gone before its body was read: there is nobody to answer
        except UnauthenticatedError as refusal:
            answer_as = response_type(request.headers.get("accept", ""))
            response = auth.unauthenticated(str(refusal), answer_as)
        except RequestError as refusal:
            response = refused(refusal, response_type(request.headers.get("accept", "")))
        except HTTPException as exc:  # Strawberry's own refusals
            code = STATUS_CODES.get(exc.status_code, "BAD_REQUEST")
            strawberry_refusal = RequestError(exc.status_code, code, exc.reason)
            answer_as = response_type(request.headers.get("accept", ""))
            response = refused(strawberry_refusal, answer_as)
        await response(scope, receive, send)

    async def _identified(self, request: Request) -> Context:
        """The request's context, with who asks: refused (UnauthenticatedError) before
        its body is read when that is not allowed. GraphiQL's page needs no key: the
        IDE sends one with each operation, from its headers editor."""
        context = await self.get_context(request, None)
        if self.should_render_graphql_ide(request):
            return context
        try:
            await context.identify(request.headers.get("authorization"))
        except TransientDatabaseError as exc:
            raise RequestError(
                503, "SERVICE_UNAVAILABLE", auth.DATABASE_AWAY, {"retry-after": "1"}
            ) from exc
        return context

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_type(request.headers.get("accept", ""))
        request.state.sub_response = sub_response
        return sub_response

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

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data: dict[str, Any]
        if request.method == "GET":
            data = dict(request.query_params)
            data["extensions"] = json_parameter(data.get("extensions"), "extensions")
            data["variables"] = json_parameter(data.get("variables"), "variables")
        else:
            data = await self._json_body(request)
        query, registering = await self._resolve_persisted(
            data.get("query"), data.get("extensions")
        )
        for name, kind_name, types in (
            ("query", "a string", (str,)),
            ("variables", "an object", (dict,)),
            ("extensions", "an object", (dict,)),
            ("operationName", "a string", (str,)),
        ):
            value = query if name == "query" else data.get(name)
            if value is not None and not isinstance(value, types):
                raise RequestError(
                    400, "BAD_REQUEST", f"`{name}` must be {kind_name} or null, if provided"
                )
        if query is None:
            raise RequestError(400, "BAD_REQUEST", NO_QUERY)
        transport = self._get_stream_transport_from_headers(request.headers)
        kind = operation_type(query, data.get("operationName"), self._max_tokens)
        refuse_operation(kind, request.method, streaming=transport is not None)
        if registering is not None:  # kept only once the request may run it
            await registering()
        return GraphQLRequestData(
            query=query,
            variables=data.get("variables"),
            operation_name=data.get("operationName"),
            extensions=data.get("extensions"),
            protocol=transport.protocol if transport else "http",
        )

    async def _json_body(self, request: AsyncHTTPRequestAdapter) -> dict[str, Any]:
        media = (request.content_type or "").split(";")[0].strip().lower()
        if media != JSON:
            raise RequestError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"send the request as {JSON} (not {media or 'no content type'})",
                {"accept": JSON},
            )
        body = await request.get_body()
        data = decode_json(body if isinstance(body, bytes) else body.encode(), "the body")
        if not isinstance(data, dict):
            raise RequestError(
                400, "BAD_REQUEST", "the body must be a JSON object (batches are not served)"
            )
        return data

    async def _resolve_persisted(
        self, query: Any, extensions: Any
    ) -> tuple[Any, Callable[[], Awaitable[bool]] | None]:
        """The document to run: `query` itself, or the one its persisted hash names; and,
        when the client registers `query` under its hash, the storing of it, for the
        caller to run once the request is known to be one the server runs."""
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is None:
            return query, None
        store = self._persisted()
        if store is None or not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise RequestError(400, "PERSISTED_QUERY_NOT_SUPPORTED", "unsupported persisted query")
        claimed = persisted.get("sha256Hash")
        if not isinstance(claimed, str):
            raise RequestError(400, "BAD_REQUEST", "persistedQuery.sha256Hash must be a string")
        if isinstance(query, str):
            if sha256(query) != claimed.lower():
                raise RequestError(400, "BAD_REQUEST", "provided sha does not match query")
            return query, functools.partial(store.store, claimed.lower(), query)
        known = await store.find(claimed.lower())
        if known is None:
            raise PersistedQueryNotFoundError
        return known, None

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data = process_result(result)
        errors: list[Any] = list(data.get("errors") or [])
        request_error = (
            bool(errors)
            and data.get("data") is None
            and not any("path" in error for error in errors)
        )
        for error in errors:
            extensions: dict[str, Any] = error.setdefault("extensions", {})
            extensions.setdefault("code", fallback_code(str(error.get("message")), request_error))
        if request_error:
            # The document never ran: per the spec the answer has no `data` at all.
            data.pop("data", None)
            sub_response: Response = request.state.sub_response
            if sub_response.media_type == GRAPHQL_RESPONSE:
                sub_response.status_code = 400
        return data

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = sub_response.media_type or JSON
        return response

    def encode_json(self, data: object) -> str:
        return json.dumps(data, separators=(",", ":"))

    async def create_streaming_response(
        self,
        request: Request | WebSocket,
        stream: Callable[[], AsyncIterator[str]],
        sub_response: Response,
        headers: Mapping[str, str],
    ) -> Response:
        # Strawberry writes the Accept list it matched into the Content-Type
        # ("multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json"):
        # the media type alone, with its parameters, is what a client can parse.
        content_type = headers.get("Content-Type", "")
        if content_type.startswith("multipart/mixed") and "," in content_type:
            headers = {**headers, "Content-Type": content_type.split(",")[0].replace(";", "; ")}
        return await super().create_streaming_response(request, stream, sub_response, headers)


def refuse_operation(
    kind: OperationType | GraphQLError | None, method: str, *, streaming: bool
) -> None:
    """Refuse, before it runs, an operation this request cannot carry."""
    if method == "GET" and kind in (OperationType.MUTATION, OperationType.SUBSCRIPTION):
        reason = "mutations are not allowed over GET; use POST"
        if kind is OperationType.SUBSCRIPTION:
            reason = SUBSCRIPTIONS_HERE
        raise RequestError(405, "METHOD_NOT_ALLOWED", reason, ALLOW_POST)
    if kind is OperationType.SUBSCRIPTION and not streaming:
        raise RequestError(400, "BAD_REQUEST", SUBSCRIPTIONS_HERE)
    if streaming and kind in (OperationType.QUERY, OperationType.MUTATION):
        raise RequestError(400, "BAD_REQUEST", STREAMS_SUBSCRIPTIONS_ONLY)
    if streaming and isinstance(kind, GraphQLError):
        # A stream has begun before the operation is parsed; say it now instead.
        raise RequestError(400, "GRAPHQL_PARSE_FAILED", kind.message)


def decode_json(text: bytes | str, what: str) -> Any:
    """Parsed JSON; a 400 refusal for anything a GraphQL request cannot be made of."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        reason = "nests too deep" if isinstance(exc, RecursionError) else f"is not JSON: {exc}"
        raise RequestError(400, "BAD_REQUEST", f"{what} {reason}") from exc
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            message = f"{what} carries a lone UTF-16 surrogate, which is not Unicode text"
            raise RequestError(400, "BAD_REQUEST", message) from exc
    # Only a body with that many brackets can nest that deep: count them first (in C).
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise RequestError(400, "BAD_REQUEST", f"{what} nests deeper than {MAX_JSON_DEPTH}")
    return data


def _depth(value: Any, level: int = 0) -> int:
    """How deep `value` nests (stopping just past the limit)."""
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(item, level + 1) for item in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(item, level + 1) for item in value), default=level + 1)
    return level


def json_parameter(value: str | None, name: str) -> Any:
    """A query-string parameter that carries JSON (GET's `variables`, `extensions`)."""
    return decode_json(value, name) if value else None


def refused(refusal: RequestError, answer_as: str) -> Response:
    body = json.dumps({"errors": [{"message": str(refusal), "extensions": {"code": refusal.code}}]})
    headers: Mapping[str, str] = refusal.headers
    return Response(body, status_code=refusal.status, headers=headers, media_type=answer_as)


def fallback_code(message: str, request_error: bool) -> str:
    """A code for an error that left the GraphQL layer without one."""
    if message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    return "GRAPHQL_VALIDATION_FAILED" if request_error else "INTERNAL_SERVER_ERROR"
