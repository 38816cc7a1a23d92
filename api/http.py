"""GraphQL over HTTP as the spec draft and Apollo Client expect, around Strawberry's view.

Strawberry answers every GraphQL request with `application/json` and status 200, and
refuses some malformed requests with plain text. This middleware, on the GraphQL path:

- answers `application/graphql-response+json` to clients that accept it (Apollo Client
  4 does), where a request error (no `data`: the document does not parse or validate) has
  status 400, and `application/json` to the others, always with status 200;
- refuses a mutation over GET with 405 and `Allow: POST`, a body that is not JSON with
  415, and a body that does not parse with 400, each with a JSON error carrying a code;
- resolves automatic persisted queries (see `api.persisted_queries`) over GET and POST.

A browser's GET (it accepts text/html) is left to the router, which shows GraphiQL,
with `?query=` as the IDE's starting document.

Streaming answers (multipart subscriptions, the GraphiQL page) pass through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.persisted_queries import PersistedQueries, sha256

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


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


def operation_type(query: str, operation_name: str | None) -> OperationType | None:
    """The type of the operation a request would run; None when it does not parse (the
    GraphQL layer then reports why)."""
    try:
        operation = get_operation_ast(parse(query, max_tokens=100_000), operation_name)
    except GraphQLError:
        return None
    return None if operation is None else operation.operation


class GraphQLOverHTTP:
    """ASGI middleware for the GraphQL path; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        persisted: Callable[[], PersistedQueries | None],
    ) -> None:
        self.app = app
        self.path = path
        self.persisted = persisted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        answer_as = response_type(headers.get("accept", ""))
        try:
            if scope["method"] == "GET" and "text/html" not in headers.get("accept", ""):
                scope = await self._prepare_get(scope)
            elif scope["method"] == "POST":
                receive = await self._prepare_post(headers, receive)
        except RequestError as refusal:
            await respond_error(send, refusal, answer_as)
            return
        await self.app(scope, receive, shape_response(send, answer_as))

    async def _prepare_get(self, scope: Scope) -> Scope:
        params = dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
        if "query" not in params and "extensions" not in params:
            return scope  # the GraphiQL page, or Strawberry's own "no query" answer
        extensions = decode_json_parameter(params.get("extensions"), "extensions")
        query = await self._resolve_persisted(params.get("query"), extensions)
        if query is None:
            return scope
        kind = operation_type(query, params.get("operationName") or None)
        if kind in (OperationType.MUTATION, OperationType.SUBSCRIPTION):
            raise RequestError(
                405,
                "METHOD_NOT_ALLOWED",
                f"{kind.value}s are not allowed over GET; use POST",
                {"allow": "POST"},
            )
        params["query"] = query
        return {**scope, "query_string": urlencode(params).encode()}

    async def _prepare_post(self, headers: dict[str, str], receive: Receive) -> Receive:
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != JSON:
            raise RequestError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"send the request as {JSON} (not {media or 'no content type'})",
                {"accept": JSON},
            )
        body = await read_body(receive)
        try:
            request = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, "BAD_REQUEST", f"the body is not valid JSON: {exc}") from exc
        if isinstance(request, dict):
            extensions = request.get("extensions")
            query = await self._resolve_persisted(request.get("query"), extensions)
            if query is not None and query != request.get("query"):
                body = json.dumps({**request, "query": query}).encode()
        return replay(body, receive)

    async def _resolve_persisted(self, query: Any, extensions: Any) -> str | None:
        """The document to run: `query` itself, or the one its persisted hash names."""
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if persisted is None:
            return query if isinstance(query, str) else None
        store = self.persisted()
        if store is None or not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise RequestError(400, "PERSISTED_QUERY_NOT_SUPPORTED", "unsupported persisted query")
        claimed = persisted.get("sha256Hash")
        if not isinstance(claimed, str):
            raise RequestError(400, "BAD_REQUEST", "persistedQuery.sha256Hash must be a string")
        if isinstance(query, str):
            if sha256(query) != claimed.lower():
                raise RequestError(400, "BAD_REQUEST", "provided sha does not match query")
            await store.store(claimed.lower(), query)
            return query
        known = await store.find(claimed.lower())
        if known is None:
            raise PersistedQueryNotFoundError
        return known


def decode_json_parameter(value: str | None, name: str) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RequestError(400, "BAD_REQUEST", f"{name} is not valid JSON") from exc


async def read_body(receive: Receive) -> bytes:
    """The whole request body (its size is bounded by the body-size middleware)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands `body` over once, then passes on what the client sends
    next (its disconnect, which a streaming answer waits for)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def respond_error(send: Send, refusal: RequestError, answer_as: str) -> None:
    body = json.dumps(
        {"errors": [{"message": str(refusal), "extensions": {"code": refusal.code}}]}
    ).encode()
    headers = [
        (b"content-type", answer_as.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in refusal.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def shape_response(send: Send, answer_as: str) -> Send:
    """A `send` that rewrites Strawberry's JSON answers (and its plain-text refusals);
    anything else (streams, HTML) goes out as it comes."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def shaped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if content_type.startswith(b"application/json") or content_type.startswith(
                b"text/plain"
            ):
                start = message
                return
            await send(message)
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status, body = reshape(start["status"], b"".join(chunks), answer_as)
        headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if name.lower() not in (b"content-type", b"content-length")
        ]
        headers += [
            (b"content-type", answer_as.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return shaped


def reshape(status: int, body: bytes, answer_as: str) -> tuple[int, bytes]:
    """Status and body for the negotiated media type."""
    try:
        result = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        # Strawberry's plain-text refusal: the same, as a GraphQL error.
        message = body.decode(errors="replace").strip() or "bad request"
        error = {"message": message, "extensions": {"code": "BAD_REQUEST"}}
        return status, json.dumps({"errors": [error]}).encode()
    if not isinstance(result, dict):
        return status, body
    errors: list[Any] = result.get("errors") or []
    request_error = (
        bool(errors) and result.get("data") is None and all("path" not in error for error in errors)
    )
    for entry in errors:
        if isinstance(entry, dict):
            extensions: dict[str, Any] = entry.setdefault("extensions", {})
            extensions.setdefault("code", fallback_code(str(entry.get("message")), request_error))
    if request_error:
        # The document never ran: per the spec the answer has no `data` at all.
        result.pop("data", None)
        if answer_as == GRAPHQL_RESPONSE and status == 200:
            status = 400
    return status, json.dumps(result, separators=(",", ":")).encode()


def fallback_code(message: str, request_error: bool) -> str:
    """A code for an error that left the GraphQL layer without one."""
    if message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    return "GRAPHQL_VALIDATION_FAILED" if request_error else "INTERNAL_SERVER_ERROR"
