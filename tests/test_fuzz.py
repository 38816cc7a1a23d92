"""Fuzzing the running API with Hypothesis: generated input against a real uvicorn.

What goes in: GraphQL documents and variables (FENs valid, absurd and near-valid,
numbers out of range, NaN and Infinity spelled in JSON, lone surrogates, nulls and wrong
types), deeply nested JSON, random bytes, non-UTF-8 bytes in header values, query
strings and bodies, broken chunking, persisted-query extensions with junk hashes,
crafted listing cursors, and WebSocket messages over both subprotocols.

Well-formed requests go through httpx; what httpx refuses to send (non-UTF-8 header
values, raw bytes in the target, broken framing) is written by hand on a socket. Every
request and WebSocket carries the test's API key, so that the fuzzing reaches past
authentication (whose refusals `tests/test_authentication.py` and
`tests/test_websocket_authentication.py` cover).

After every example:

- no 5xx, except a deliberate SERVICE_UNAVAILABLE; no WebSocket closed with 1011 or
  dropped without a close frame;
- every GraphQL error has `extensions.code`, and none is a masked INTERNAL_SERVER_ERROR;
- every non-2xx answer on /graphql is JSON with an error code (uvicorn's own refusal of
  bytes that are not HTTP, before the application sees them, and a refused WebSocket
  handshake, whose body a browser cannot read, are the exceptions);
- the server logged no error;
- GET /healthz answers 200 on a new connection, and the example's keep-alive connection
  serves a following request (unless the answer said `Connection: close`);
- a refused request stored nothing: rows in `analyses` and `persisted_queries` grow only
  by what an answer that ran accounts for;
- the server is done with the example: no request or WebSocket still served, and no
  connection of a raw or WebSocket example still held.

The explicit examples are failures the fuzzing found once: every run tries them first.
Hypothesis keeps no example database (nothing is written into the repository); a
failure prints the example to reproduce it. The whole file runs in about 30 s on two
cores when nothing fails; shrinking a failure takes longer.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.exceptions import InvalidHandshake

from tests.conftest import ApiFactory
from tests.fuzz.exchanges import TIMEOUT, exchange_raw, play
from tests.fuzz.graphql_inputs import (
    ACCEPTS,
    PERSISTED_CASES,
    GraphQLRequest,
    PersistedCase,
    crafted_cursors,
    maybe,
    shaped_requests,
)
from tests.fuzz.harness import ServerLog, Target, send_graphql
from tests.fuzz.http_inputs import WEBSOCKET_UPGRADE, HttpRequest, http_requests
from tests.fuzz.json_values import NUMBERS, Token, nested
from tests.fuzz.websocket_inputs import ws_scripts

# Hypothesis keeps caches next to the tests unless told otherwise; not in the repository.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "chess-analysis-hypothesis"))

FUZZ = settings(
    deadline=None,
    database=None,  # no example database written anywhere
    # In CI the same examples every run, so that a red run means a change broke
    # something; elsewhere new ones every run, to keep finding what is not known yet.
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one server per test, shared by its examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
async def target(start_api: ApiFactory, database: AsyncEngine) -> AsyncIterator[Target]:
    """A server with the shared persisted-query store on, so junk reaches PostgreSQL."""
    server = await start_api(persisted_queries_shared=True, ws_connection_init_timeout=2.0)
    log = ServerLog()
    root = logging.getLogger()
    root.addHandler(log)
    limits = httpx.Limits(max_connections=1)
    try:
        async with httpx.AsyncClient(
            timeout=TIMEOUT, limits=limits, headers=server.headers
        ) as client:
            yield Target(server, database, log, client)
    finally:
        root.removeHandler(log)


# --------------------------------------------------------------------------- HTTP tests
#
# The explicit examples are failures the fuzzing found (kept so that every run tries them).

A_UUID = "7ec5004f-ff84-4f80-b420-dcb052231bc3"
DIGITS = "9" * 4301
"""An integer Python will not read from text (its limit is 4,300 digits)."""
MULTIPART = "multipart/mixed;subscriptionSpec=1.0,application/json"


@settings(FUZZ, max_examples=600)
@given(
    request=shaped_requests(),
    method=st.sampled_from(["POST", "POST", "GET"]),
    accept=ACCEPTS,
)
@example(GraphQLRequest("{}"), "POST", None)
@example(GraphQLRequest("{ analyses(first: " + DIGITS + ") { edges { cursor } } }"), "POST", None)
@example(GraphQLRequest(Token(DIGITS)), "POST", None)
@example(GraphQLRequest("{ __typename }", Token(nested(5000))), "POST", None)
@example(GraphQLRequest("{ __typename }", operation_name=[]), "POST", None)
@example(
    GraphQLRequest(f'subscription {{ analysisCompleted(id: "{A_UUID}") {{ id }} }}'), "POST", None
)
@example(GraphQLRequest("{ __typename }"), "POST", MULTIPART)
@example(GraphQLRequest(None), "POST", MULTIPART)
@example(GraphQLRequest("{ bad"), "POST", MULTIPART)
async def test_graphql_requests(
    target: Target, request: GraphQLRequest, method: str, accept: str | None
) -> None:
    async with target.example():
        before = await target.stored()
        answer = await send_graphql(target, request, method, accept)
        await target.check_http(answer, before)


def registration(document: str, hashed: Any = "exact") -> PersistedCase:
    return PersistedCase(document, hashed, 1, send_document=True, register_first=False)


def lookup(hashed: Any) -> PersistedCase:
    return PersistedCase("{ __typename }", hashed, 1, send_document=False, register_first=False)


@settings(FUZZ, max_examples=200)
@given(case=PERSISTED_CASES, method=st.sampled_from(["POST", "GET"]), accept=ACCEPTS)
@example(registration('mutation { cancelAnalysis(id: "x") { id } }'), "GET", None)
@example(registration(""), "POST", None)
@example(registration("{ __typename } # \ud800"), "POST", None)
@example(lookup("\x00" * 64), "POST", None)
@example(lookup("\ud800" * 64), "POST", None)
async def test_persisted_queries(
    target: Target, case: PersistedCase, method: str, accept: str | None
) -> None:
    for request in case.requests():
        async with target.example():
            before = await target.stored()
            answer = await send_graphql(target, request, method, accept)
            await target.check_http(answer, before)


def cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@settings(FUZZ, max_examples=200)
@given(
    after=crafted_cursors(),
    first=maybe(st.integers(1, 100), NUMBERS),
    method=st.sampled_from(["POST", "GET"]),
)
@example(cursor(f"0001-01-01T00:00:00+23:59|{A_UUID}"), 1, "POST")
@example("x", Token(DIGITS), "POST")
async def test_listing_cursors(target: Target, after: Any, first: Any, method: str) -> None:
    request = GraphQLRequest(
        "query($first: Int!, $after: String) { analyses(first: $first, after: $after) "
        "{ edges { cursor } pageInfo { hasNextPage endCursor } } }",
        {"first": first, "after": after},
    )
    async with target.example():
        before = await target.stored()
        answer = await send_graphql(target, request, method, None)
        await target.check_http(answer, before)


JSON_TYPE = [(b"content-type", b"application/json")]
TYPENAME = b'{"query": "{ __typename }"}'


@settings(FUZZ, max_examples=500)
@given(request=http_requests())
@example(HttpRequest(b"PATCH", b"/graphql", [(b"content-type", b"\xc0\xaf")]))
@example(HttpRequest(b"POST", b"/graphql", [*JSON_TYPE, (b"accept", b"\xff")], TYPENAME))
@example(HttpRequest(b"PUT", b"/graphql", JSON_TYPE, TYPENAME))
@example(HttpRequest(b"POST", b"/graphql", JSON_TYPE, TYPENAME, "long-length"))
@example(HttpRequest(b"GET", b"/graphql", WEBSOCKET_UPGRADE, framing="none"))
@example(
    HttpRequest(
        b"GET",
        b"/graphql",
        [*WEBSOCKET_UPGRADE, (b"sec-websocket-protocol", b"\xff")],
        framing="none",
    )
)
async def test_raw_http_requests(target: Target, request: HttpRequest) -> None:
    async with target.example(own_connections=True):
        before = await target.stored()
        keyed = dataclasses.replace(
            request,
            headers=[*request.headers, (b"authorization", f"Bearer {target.server.key}".encode())],
        )
        answer = await exchange_raw(target.server, keyed)
        if request.broken_framing and answer.status is None:
            answer.status = 400  # closing on broken framing is a fair answer
            answer.headers = {"content-type": "application/json", "connection": "close"}
            answer.body = b'{"errors":[{"message":"closed","extensions":{"code":"BAD_REQUEST"}}]}'
        await target.check_http(answer, before)


# --------------------------------------------------------------------------- WebSocket tests


async def check_frames(target: Target, protocol: str, frames: list[str | bytes]) -> None:
    async with target.example(own_connections=True):
        before = await target.stored()
        try:
            # The key on the upgrade request: every `connection_init` the fuzzing sends
            # is then one of a known tenant, whatever its payload.
            outcome = await play(target.server.ws_url, protocol, frames, target.server.headers)
        except InvalidHandshake as exc:
            pytest.fail(f"the handshake failed: {exc!r}{target.log.describe()}")
        await target.check_websocket(outcome, before)


INIT = '{"type":"connection_init"}'
HUGE_MESSAGE = '{"a":' * 20_001 + "1" + "}" * 20_001
"""Deeper than Python's JSON reader goes, and longer than 100 KB."""
MUTATION = json.dumps(f'mutation {{ cancelAnalysis(id: "{A_UUID}") {{ id }} }}')
TYPENAME_QUERY = '{"query":"{ __typename }"}'


@settings(FUZZ, max_examples=300)
@given(frames=ws_scripts("graphql-transport-ws"))
@example(["null"])
@example([INIT, '{"type":"subscribe","id":"1","payload":null}'])
@example([INIT, '{"type":"subscribe","id":{},"payload":' + TYPENAME_QUERY + "}"])
@example([INIT, '{"type":"\\ud800"}'])
@example([INIT, '{"type":"subscribe","id":"1","payload":{"query":{}}}'])
@example(
    [INIT, '{"type":"subscribe","id":"1","payload":{"query":"{ __typename }","operationName":0}}']
)
@example([INIT, HUGE_MESSAGE])
async def test_graphql_transport_ws_messages(target: Target, frames: list[str | bytes]) -> None:
    await check_frames(target, "graphql-transport-ws", frames)


@settings(FUZZ, max_examples=300)
@given(frames=ws_scripts("graphql-ws"))
@example(["{}"])
@example([INIT, '{"type":"stop"}'])
@example([INIT, '{"type":"start","id":"1","payload":{}}'])
@example([INIT, '{"type":"start","id":"1","payload":{"query":' + MUTATION + "}}"])
@example(
    [INIT, '{"type":"start","id":"1","payload":{"query":"{ __typename }","operationName":[]}}']
)
@example([INIT, '{"type":"start","id":"1","payload":{"query":' + MUTATION + "}}", b"\x00"])
@example([INIT, HUGE_MESSAGE])
async def test_graphql_ws_messages(target: Target, frames: list[str | bytes]) -> None:
    await check_frames(target, "graphql-ws", frames)
