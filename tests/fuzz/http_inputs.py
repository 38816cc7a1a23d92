"""Whole HTTP/1.1 requests as bytes, for what httpx will not send: non-UTF-8 header
values, raw bytes in query strings and bodies, broken framing, WebSocket handshakes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st

from tests.fuzz.graphql_inputs import shaped_requests
from tests.fuzz.json_values import DEEP_JSON, NUMBER_TOKENS, nested, to_json


@dataclass
class HttpRequest:
    """A whole HTTP/1.1 request, as bytes on a socket."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    framing: str = "length"
    """length, chunked, none; or broken ones: bad-chunks, short-length, long-length."""

    @property
    def broken_framing(self) -> bool:
        """The body does not end where the server will think it ends (without a length,
        a body is read as the next request)."""
        return self.framing in ("bad-chunks", "short-length", "long-length") or (
            self.framing == "none" and bool(self.body)
        )

    def encode(self) -> bytes:
        headers = [(b"host", b"127.0.0.1"), *self.headers]
        body = self.body
        if self.framing == "length":
            headers.append((b"content-length", str(len(body)).encode()))
        elif self.framing == "short-length":
            headers.append((b"content-length", str(max(len(body) - 3, 0)).encode()))
        elif self.framing == "long-length":
            headers.append((b"content-length", str(len(body) + 7).encode()))
        elif self.framing == "chunked":
            headers.append((b"transfer-encoding", b"chunked"))
            body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
        elif self.framing == "bad-chunks":
            headers.append((b"transfer-encoding", b"chunked"))
            body = b"zz\r\n" + body + b"\r\n0\r\n"
        head = b"%s %s HTTP/1.1\r\n" % (self.method, self.target)
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        return head + b"\r\n" + body

    def __repr__(self) -> str:
        return f"HttpRequest({self.encode()!r})"


NON_UTF8 = st.one_of(
    st.sampled_from([b"\xff", b"\xfe\xff", b"caf\xe9", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80"]),
    st.binary(min_size=1, max_size=8).filter(lambda raw: not is_utf8(raw)),
)


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


HEADER_VALUE_BYTES = st.one_of(
    st.binary(max_size=20).map(lambda raw: bytes(b for b in raw if b not in b"\r\n\x00")),
    NON_UTF8,
    st.tuples(st.sampled_from([b"application/json", b"text/html", b"*/*"]), NON_UTF8).map(
        lambda parts: parts[0] + parts[1]
    ),
)

QUERY_STRINGS = st.one_of(
    st.builds(
        lambda name, value: name + b"=" + value,
        st.sampled_from([b"query", b"variables", b"extensions", b"operationName"]),
        st.one_of(
            st.binary(max_size=20).map(quote_from_bytes).map(str.encode),
            NON_UTF8.map(quote_from_bytes).map(str.encode),
            NON_UTF8,
            st.just(b"%7B__typename%7D"),
            st.integers(3000, 6000).map(
                lambda depth: quote_from_bytes(nested(depth).encode()).encode()
            ),
        ),
    ),
    st.just(b"query=%7B__typename%7D&variables=%FF"),
    st.just(b"query=%7B__typename%7D&extensions=%ED%A0%80"),
)

JSON_BODIES = st.one_of(
    st.binary(max_size=60),
    st.builds(lambda raw: b'{"query": "{ __typename }' + raw + b'"}', NON_UTF8),
    st.builds(lambda raw: b'{"query": "' + raw + b'"}', NON_UTF8),
    st.just('{"query": "{ __typename }"}'.encode("utf-16")),
    st.just(b'\xef\xbb\xbf{"query": "{ __typename }"}'),
    DEEP_JSON.map(lambda token: token.text.encode()),
    DEEP_JSON.map(
        lambda token: ('{"query": "{ __typename }", "variables": ' + token.text + "}").encode()
    ),
    NUMBER_TOKENS.map(
        lambda token: (
            '{"query": "{ __typename }", "variables": {"a": ' + token.text + "}}"
        ).encode()
    ),
    shaped_requests().map(lambda request: to_json(request.members()).encode()),
)

FUZZED_HEADERS = (
    "accept x-request-id origin user-agent cookie authorization x-forwarded-for "
    "accept-encoding expect sec-websocket-protocol"
)
HEADER_NAMES = [name.encode() for name in FUZZED_HEADERS.split()]

WEBSOCKET_UPGRADE = [
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
]

METHODS = st.sampled_from(
    [b"GET", b"POST", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"QUERY"]
)


@st.composite
def http_requests(draw: st.DrawFn) -> HttpRequest:
    method = draw(METHODS)
    query = draw(st.none() | QUERY_STRINGS)
    path = draw(st.sampled_from([b"/graphql", b"/graphql", b"/graphql/", b"/healthz", b"/"]))
    target = path if query is None else path + b"?" + query
    headers: list[tuple[bytes, bytes]] = []
    content_type = draw(
        st.sampled_from(
            [
                b"application/json",
                b"application/json",
                b"application/json; charset=latin-1",
                b"text/plain",
                None,
            ]
        )
        | HEADER_VALUE_BYTES
    )
    if content_type is not None:
        headers.append((b"content-type", content_type))
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=3, unique=True)):
        headers.append((name, draw(HEADER_VALUE_BYTES)))
    framing = draw(
        st.sampled_from(
            ["length"] * 6 + ["chunked", "none", "bad-chunks", "short-length", "long-length"]
        )
    )
    if method == b"GET" and not draw(st.integers(0, 5)):
        # a WebSocket handshake with junk in its headers (a subprotocol, an origin)
        headers += WEBSOCKET_UPGRADE
        framing = "none"
    body = b"" if method in (b"GET", b"HEAD") and framing == "none" else draw(JSON_BODIES)
    return HttpRequest(method, target, headers, body, framing)
