"""Talking to the server under test: a request through httpx or as raw bytes on a
socket, a script of WebSocket frames, and what came back (an `Answer`, a `WsOutcome`),
with the GraphQL errors in it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.conftest import Server
from tests.fuzz.http_inputs import HttpRequest
from tests.fuzz.json_values import to_json

TIMEOUT = 10.0
"""Bound on any single answer from the server."""

WS_ANSWER_TIMEOUT = 3.0
"""How long a WebSocket may stay silent after a probe before it counts as hung."""

UVICORN_REFUSAL = b"Invalid HTTP request received."
"""uvicorn's own answer to bytes that are not HTTP/1.1; the application never sees them."""

# --------------------------------------------------------------------------- HTTP


@dataclass
class Answer:
    """What the server answered one request, and what happened around it."""

    sent: str
    """What was sent, for messages."""
    status: int | None
    """None: the server closed the connection without an answer."""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    next_request: str = "not tried"
    """What became of a request on the same connection after this one: 'ok' or why not."""
    graphql_path: bool = True
    head: bool = False
    """An answer to HEAD: headers only."""
    upgrade: bool = False
    """An answer to a WebSocket handshake."""

    @property
    def json_media(self) -> bool:
        media = self.headers.get("content-type", "").split(";")[0].strip().lower()
        return media in ("application/json", "application/graphql-response+json")

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()

    @property
    def refused_by_uvicorn(self) -> bool:
        return self.status == 400 and self.body.strip() == UVICORN_REFUSAL

    def decoded(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return NOT_JSON

    def results(self) -> list[Any]:
        """The GraphQL results in the answer: its JSON body, or each multipart payload."""
        if self.json_media:
            return [self.decoded()]
        if not self.headers.get("content-type", "").startswith("multipart/mixed"):
            return []
        results = []
        for part in self.body.split(b"\r\n\r\n")[1:]:
            try:
                message = json.loads(part.split(b"\r\n--")[0])
            except ValueError:
                results.append(NOT_JSON)
                continue
            if isinstance(message, dict) and isinstance(message.get("payload"), dict):
                results.append(message["payload"])
            if isinstance(message, dict) and "errors" in message:  # transport-level errors
                results.append({"errors": message["errors"]})
        return results

    def describe(self) -> str:
        return (
            f"sent: {self.sent[:2000]}\n"
            f"answer: {self.status} {self.headers}\n{self.body[:1000]!r}\n"
            f"next request on the same connection: {self.next_request}"
        )


NOT_JSON = object()


class RawConnection:
    """One HTTP/1.1 connection on a real socket, for bytes httpx would not send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[RawConnection]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            yield cls(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, method: bytes = b"GET") -> tuple[int, dict[str, str], bytes] | None:
        """The next response (after any 1xx); None if the server closed without one."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                line = await self.reader.readline()
                if not line:
                    return None
                status = int(line.split(b" ", 2)[1])
                headers: dict[str, str] = {}
                while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    key = name.strip().lower()
                    headers[key] = ", ".join(filter(None, [headers.get(key), value.strip()]))
                if status >= 200 or status == 101:
                    break
            if method == b"HEAD" or status in (204, 304) or status == 101:
                return status, headers, b""
            if "chunked" in headers.get("transfer-encoding", ""):
                return status, headers, await self._chunks()
            if "content-length" in headers:
                return (
                    status,
                    headers,
                    await self.reader.readexactly(int(headers["content-length"])),
                )
            return status, headers, await self.reader.read()

    async def _chunks(self) -> bytes:
        body = b""
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            body += await self.reader.readexactly(size)
            await self.reader.readline()
        while (await self.reader.readline()) not in (b"\r\n", b""):
            pass
        return body


HEALTH_REQUEST = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


async def exchange_raw(server: Server, request: HttpRequest) -> Answer:
    """Send `request` on a new socket; then, unless told to close, GET /healthz on it."""
    async with RawConnection.open(server.port) as connection:
        await connection.send(request.encode())
        if request.framing in ("long-length", "bad-chunks"):
            connection.writer.write_eof()  # the server would wait for the rest for ever
        sent = repr(request.encode())
        try:
            response = await connection.response(request.method)
        except (ConnectionError, asyncio.IncompleteReadError):
            response = None
        except TimeoutError:
            return Answer(sent, None, next_request=f"not tried: no answer in {TIMEOUT} s")
        path = request.target.split(b"?")[0].rstrip(b"/")
        if response is None:
            return Answer(sent, None, graphql_path=path == b"/graphql")
        status, headers, body = response
        answer = Answer(
            sent,
            status,
            headers,
            body,
            graphql_path=path == b"/graphql",
            head=request.method == b"HEAD",
            upgrade=(b"upgrade", b"websocket") in request.headers,
        )
        if request.broken_framing or answer.closes or answer.upgrade or answer.head:
            answer.next_request = "not tried (framing broken, an upgrade or Connection: close)"
            return answer
        try:
            await connection.send(HEALTH_REQUEST)
            follow = await connection.response()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            answer.next_request = f"failed: {exc!r}"
        else:
            answer.next_request = "ok" if follow and follow[0] == 200 else f"answered {follow}"
        return answer


async def exchange(
    client: httpx.AsyncClient,
    server: Server,
    method: str,
    *,
    query: bytes = b"",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One well-formed request through httpx (whose single connection the examples
    share, as a client's would), then GET /healthz on the same connection."""
    url = httpx.URL(server.http_url, query=query)
    sent = f"{method} {url} headers={headers} body={body[:2000] if body else b''!r}"
    try:
        response = await client.request(method, url, content=body, headers=headers)
    except httpx.HTTPError as exc:  # the server hung up mid-answer, or never answered
        return Answer(sent, None, next_request=f"not tried: the request failed: {exc!r}")
    answer = Answer(sent, response.status_code, dict(response.headers), response.content)
    if answer.closes:
        answer.next_request = "not tried (Connection: close)"
        return answer
    stream = response.extensions.get("network_stream")
    try:
        follow = await client.get(server.http_url.replace("/graphql", "/healthz"))
    except httpx.HTTPError as exc:
        answer.next_request = f"failed: {exc!r}"
    else:
        reused = follow.extensions.get("network_stream") is stream
        answer.next_request = (
            "ok"
            if follow.status_code == 200 and reused
            else f"status {follow.status_code}; same connection: {reused}"
        )
    return answer


def graphql_query_string(members: dict[str, Any]) -> bytes:
    """A GET query string: strings as they are, the rest as JSON; surrogates kept as
    the bytes CESU would give them (not UTF-8: the server must cope)."""
    parts = []
    for name, value in members.items():
        spelled = value if isinstance(value, str) else to_json(value)
        parts.append(f"{name}={quote_from_bytes(spelled.encode(errors='surrogatepass'))}")
    return "&".join(parts).encode()


def graphql_errors(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    return errors if isinstance(errors, list) else []


def code_of(error: Any) -> Any:
    extensions = error.get("extensions") if isinstance(error, dict) else None
    return extensions.get("code") if isinstance(extensions, dict) else None


# --------------------------------------------------------------------------- WebSocket


@dataclass
class WsOutcome:
    sent: list[str | bytes]
    messages: list[Any] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    probe: str = "not answered"

    def results(self) -> list[dict[str, Any]]:
        """The GraphQL results the server sent (`next` and `data` payloads)."""
        return [
            message["payload"]
            for message in self.messages
            if isinstance(message, dict)
            and message.get("type") in ("next", "data")
            and isinstance(message.get("payload"), dict)
        ]

    def graphql_errors(self) -> list[Any]:
        errors = [error for result in self.results() for error in graphql_errors(result)]
        for message in self.messages:
            if isinstance(message, dict) and message.get("type") == "error":
                payload = message.get("payload")
                errors += payload if isinstance(payload, list) else [payload]
        return errors

    def describe(self) -> str:
        return (
            f"sent: {[frame[:500] for frame in self.sent]!r}\n"
            f"received: {json.dumps(self.messages)[:3000]}\n"
            f"closed: {self.close_code} {self.close_reason!r}; probe: {self.probe}"
        )


def probe_for(protocol: str) -> tuple[str, Any]:
    """A message the server must answer whatever came before, and how to know the answer."""
    if protocol == "graphql-transport-ws":
        return json.dumps({"type": "ping"}), lambda message: message.get("type") == "pong"
    query = 'subscription { analysisCompleted(id: "00000000-0000-0000-0000-000000000000") { id } }'
    start = {"type": "start", "id": "probe", "payload": {"query": query}}
    return json.dumps(start), lambda message: message.get("id") == "probe"


async def play(
    url: str, protocol: str, frames: list[str | bytes], headers: dict[str, str] | None = None
) -> WsOutcome:
    """Send `frames` (after an upgrade request with `headers`), then a probe; gather what
    comes back until the probe's answer, the close, or silence."""
    outcome = WsOutcome(frames)
    probe, answers_probe = probe_for(protocol)
    socket: ClientConnection
    async with connect(
        url,
        subprotocols=[Subprotocol(protocol)],
        additional_headers=headers,
        open_timeout=TIMEOUT,
        close_timeout=2,
        max_size=None,
    ) as socket:
        try:
            for frame in frames:
                await socket.send(frame)
            await socket.send(probe)
            async with asyncio.timeout(WS_ANSWER_TIMEOUT):
                while True:
                    raw = await socket.recv()
                    message = json.loads(raw)
                    outcome.messages.append(message)
                    if isinstance(message, dict) and message.get("type") == "ping":
                        await socket.send(json.dumps({"type": "pong"}))
                    if isinstance(message, dict) and answers_probe(message):
                        outcome.probe = "answered"
                        break
        except ConnectionClosed:
            outcome.probe = "connection closed"
        except TimeoutError:
            outcome.probe = "silent"
    # 1006 when the server dropped the connection without a close frame; 1000 when we
    # closed it ourselves at the end and the server echoed.
    outcome.close_code = socket.close_code
    outcome.close_reason = socket.close_reason or ""
    return outcome
