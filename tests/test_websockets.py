"""WebSocket hygiene: init deadline, keep-alive, subscription cap, no leaked waiters,
every mistake answered, the same limits as over HTTP, message size, idle connections."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.settings import ApiSettings
from tests.conftest import REFERENCE_FEN, ApiFactory, Server
from tests.graphql_client import COMPLETED, authorization, post, submit

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


async def receive_any(socket: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), timeout))
    return message


async def receive(socket: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    """The next message that is not a keep-alive."""
    while True:
        message = await receive_any(socket, timeout)
        if message["type"] not in ("ka", "ping"):
            return message


async def open_session(server: Server, protocol: str) -> ClientConnection:
    socket = await connect(server.ws_url, subprotocols=[protocol])  # type: ignore[list-item]
    init = {"type": "connection_init", "payload": authorization(server.key)}
    await socket.send(json.dumps(init))
    assert (await receive(socket))["type"] == "connection_ack"
    return socket


def operation_message(
    protocol: str, number: int, query: str, variables: dict[str, Any] | None = None
) -> str:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    payload = {"query": query, "variables": variables or {}}
    return json.dumps({"id": str(number), "type": kind, "payload": payload}, ensure_ascii=False)


def subscribe_message(protocol: str, number: int, analysis_id: str) -> str:
    return operation_message(protocol, number, COMPLETED, {"id": analysis_id})


def stop_message(protocol: str, number: int) -> str:
    kind = "complete" if protocol == TRANSPORT_WS else "stop"
    return json.dumps({"id": str(number), "type": kind})


def error_codes(message: dict[str, Any]) -> list[str]:
    """The codes of an `error` message's GraphQL errors: a list on graphql-transport-ws,
    one error on the legacy protocol."""
    assert message["type"] == "error", message
    payload = message["payload"]
    errors = payload if isinstance(payload, list) else [payload]
    return [error["extensions"]["code"] for error in errors]


async def closed(socket: ClientConnection, also: tuple[str, ...] = ()) -> int | None:
    """Wait for the server to close `socket`, reading past keep-alives and the message
    types in `also`; its close code."""
    async with asyncio.timeout(5):
        while True:
            try:
                message = json.loads(await socket.recv())
            except ConnectionClosed:
                return socket.close_code
            assert message["type"] in ("ka", "ping", *also), message


async def wait_for_waiters(server: Server, count: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while server.services.hub.waiting != count:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_client_that_never_initialises_is_closed(
    start_api: ApiFactory, protocol: str
) -> None:
    server = await start_api(ws_connection_init_timeout=0.5)
    async with connect(server.ws_url, subprotocols=[protocol]) as socket:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
        assert socket.close_code == 4408


async def test_idle_connections_get_keep_alive_messages(start_api: ApiFactory) -> None:
    server = await start_api(ws_keep_alive_interval=0.2)
    socket = await open_session(server, LEGACY_WS)
    try:
        assert (await receive_any(socket, timeout=3))["type"] == "ka"
    finally:
        await socket.close()
    socket = await open_session(server, TRANSPORT_WS)
    try:
        assert (await receive_any(socket, timeout=3))["type"] == "ping"
    finally:
        await socket.close()


def keep_alive_loops() -> int:
    """graphql-ws keep-alive loops running in this event loop (the test's API serves in it)."""
    return sum(
        getattr(task.get_coro(), "__qualname__", "") == "LegacyHandler.handle_keep_alive"
        for task in asyncio.all_tasks()
    )


async def test_a_repeated_connection_init_keeps_one_keep_alive_loop(api: Server) -> None:
    socket = await open_session(api, LEGACY_WS)
    try:
        for _ in range(3):
            init = {"type": "connection_init", "payload": authorization(api.key)}
            await socket.send(json.dumps(init))
            assert (await receive(socket))["type"] == "connection_ack"
        assert keep_alive_loops() == 1
    finally:
        await socket.close()
    async with asyncio.timeout(5):
        while keep_alive_loops():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_subscriptions_per_connection_are_capped(
    start_api: ApiFactory, protocol: str
) -> None:
    server = await start_api(ws_max_subscriptions=3)
    analysis = await submit(server.http_url, fen="8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1")
    socket = await open_session(server, protocol)
    try:
        for number in range(3):
            await socket.send(subscribe_message(protocol, number, analysis["id"]))
        await wait_for_waiters(server, 3)
        await socket.send(subscribe_message(protocol, 3, analysis["id"]))
        refused = await receive(socket)
        assert refused["id"] == "3"
        assert error_codes(refused) == ["BAD_REQUEST"]
        assert "limit" in json.dumps(refused["payload"])
        assert server.services.hub.waiting == 3
    finally:
        await socket.close()
    await wait_for_waiters(server, 0)


async def test_a_thousand_dropped_subscriptions_leave_the_hub_empty(api: Server) -> None:
    analysis = await submit(api.http_url, fen="8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1")
    sockets = []
    for connection in range(10):
        protocol = TRANSPORT_WS if connection % 2 else LEGACY_WS
        socket = await open_session(api, protocol)
        for number in range(100):
            await socket.send(subscribe_message(protocol, number, analysis["id"]))
        sockets.append(socket)
    await wait_for_waiters(api, 1000)
    # Half the clients say goodbye, half just vanish mid-wait.
    for index, socket in enumerate(sockets):
        if index % 2:
            await socket.close()
        else:
            socket.transport.abort()
    await wait_for_waiters(api, 0)


# --- every mistake answered ---------------------------------------------------------

VARIABLE_ID = "subscription S($id: ID!) { analysisCompleted(id: $id) { id status } }"
MISTAKES = {
    "does not parse": ("subscription { analysisCompleted(id: ", {}, "GRAPHQL_PARSE_FAILED"),
    "does not validate": ("subscription { nothingHere }", {}, "GRAPHQL_VALIDATION_FAILED"),
    "wrong variable": (VARIABLE_ID, {"id": [1, 2]}, "BAD_USER_INPUT"),
    "missing variable": (VARIABLE_ID, {}, "BAD_USER_INPUT"),
    "an empty document": ("", {}, "BAD_REQUEST"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_document_in_error_is_answered_with_its_errors(
    api: Server, protocol: str, mistake: str
) -> None:
    query, variables, code = MISTAKES[mistake]
    socket = await open_session(api, protocol)
    try:
        await socket.send(operation_message(protocol, 1, query, variables))
        answer = await receive(socket)
        assert answer["id"] == "1"
        assert error_codes(answer) == [code]
        # The error ends the operation (no `complete` follows it) and nothing else: the
        # same connection runs the next operation, a query on either protocol.
        await socket.send(operation_message(protocol, 2, "{ __typename }"))
        data = await receive(socket)
        assert data["id"] == "2"
        assert data["payload"] == {"data": {"__typename": "Query"}}
        assert await receive(socket) == {"id": "2", "type": "complete"}
    finally:
        await socket.close()


OPERATION = {"query": "{ __typename }"}
MALFORMED = {
    "not JSON": "{nope",
    "JSON nested too deep": "[" * 5_000 + "]" * 5_000,
    "not an object": json.dumps([OPERATION]),
    "no type": json.dumps({"id": "1", "payload": OPERATION}),
    "an unknown type": json.dumps({"type": "\ud800" * 100}),
    "no id": json.dumps({"type": "START", "payload": OPERATION}),
    "a number as id": json.dumps({"id": 1, "type": "START", "payload": OPERATION}),
    "no payload": json.dumps({"id": "1", "type": "START"}),
    "a number as query": json.dumps({"id": "1", "type": "START", "payload": {"query": 1}}),
    "a list of variables": json.dumps(
        {"id": "1", "type": "START", "payload": {"query": "{ __typename }", "variables": [1]}}
    ),
    "a stop without id": json.dumps({"type": "STOP"}),
}
"""Messages of the wrong form (START and STOP stand for each protocol's types)."""


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_message_closes_a_graphql_transport_ws_connection(
    api: Server, case: str
) -> None:
    message = MALFORMED[case].replace("START", "subscribe").replace("STOP", "complete")
    socket = await open_session(api, TRANSPORT_WS)
    await socket.send(message)
    assert await closed(socket) == 4400  # as the protocol says


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_message_is_answered_on_graphql_ws(api: Server, case: str) -> None:
    message = MALFORMED[case].replace("START", "start").replace("STOP", "stop")
    socket = await open_session(api, LEGACY_WS)
    try:
        await socket.send(message)
        assert error_codes(await receive(socket)) == ["BAD_REQUEST"]
        await socket.send(operation_message(LEGACY_WS, 2, "{ __typename }"))
        assert (await receive(socket))["payload"] == {"data": {"__typename": "Query"}}
    finally:
        await socket.close()


# --- the limits of HTTP -------------------------------------------------------------

LIMITED = {
    "depth": ("analysisCompleted(id: ID) { result { rank } }", "GRAPHQL_VALIDATION_FAILED"),
    "tokens": ("analysisCompleted(id: ID) { id " + "status " * 60 + "}", "GRAPHQL_PARSE_FAILED"),
    "aliases": ("analysisCompleted(id: ID) { a: id b: status }", "GRAPHQL_VALIDATION_FAILED"),
}


@pytest.mark.parametrize("limit", sorted(LIMITED))
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_operations_meet_the_limits_of_http(
    start_api: ApiFactory, protocol: str, limit: str
) -> None:
    server = await start_api(max_query_depth=1, max_tokens=50, max_aliases=1)
    submitted = await post(
        server.http_url,
        f'mutation {{ submitAnalysis(input: {{fen: "{REFERENCE_FEN}"}}) {{ id }} }}',
    )
    analysis_id = submitted["data"]["submitAnalysis"]["id"]
    within = f'subscription {{ analysisCompleted(id: "{analysis_id}") {{ c: id status }} }}'
    selection, code = LIMITED[limit]
    socket = await open_session(server, protocol)
    try:
        await socket.send(operation_message(protocol, 1, within))
        await wait_for_waiters(server, 1)  # within every limit: it waits for the analysis
        beyond = "subscription { " + selection.replace("ID", '"x"') + " }"
        await socket.send(operation_message(protocol, 2, beyond))
        answer = await receive(socket)
        assert answer["id"] == "2"
        assert error_codes(answer)[0] == code
        # The same selection in a query over HTTP meets the same limit.
        query = "{ " + selection.replace("analysisCompleted(id: ID)", 'analysis(id: "x")') + " }"
        async with httpx.AsyncClient(timeout=5, headers=server.headers) as client:
            response = await client.post(
                server.http_url, json={"query": query}, headers={"accept": "application/json"}
            )
        assert response.json()["errors"][0]["extensions"]["code"] == code
        assert server.services.hub.waiting == 1
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_message_over_the_limit_closes_the_connection(
    start_api: ApiFactory, protocol: str
) -> None:
    server = await start_api(ws_max_message_bytes=1_000)
    socket = await open_session(server, protocol)
    # Within the limit, a comment of 100 euro signs (300 bytes in UTF-8) is read.
    await socket.send(operation_message(protocol, 1, "#" + "€" * 100 + "\n{ __typename }"))
    assert (await receive(socket))["payload"] == {"data": {"__typename": "Query"}}
    assert (await receive(socket))["type"] == "complete"
    # 400 of them are 400 characters but 1,200 bytes: too big.
    await socket.send(operation_message(protocol, 2, "#" + "€" * 400 + "\n{ __typename }"))
    assert await closed(socket) == 1009


def test_the_message_limit_is_the_body_limit_unless_set() -> None:
    assert ApiSettings(max_body_bytes=5_000).ws_message_limit == 5_000
    assert ApiSettings(max_body_bytes=5_000, ws_max_message_bytes=2_000).ws_message_limit == 2_000
    assert ApiSettings().ws_message_limit == ApiSettings().max_body_bytes


# --- idle connections ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_connection_without_operations_is_closed_when_idle(
    start_api: ApiFactory, protocol: str
) -> None:
    server = await start_api(ws_idle_timeout=0.5, ws_keep_alive_interval=0.1)
    analysis = await submit(server.http_url, fen=REFERENCE_FEN)
    subscribed = await open_session(server, protocol)
    await subscribed.send(subscribe_message(protocol, 1, analysis["id"]))
    await wait_for_waiters(server, 1)
    # A connection opened after the subscription, which never subscribes, is closed...
    idle = await open_session(server, protocol)
    assert await closed(idle) == 1000
    # ...while the one with a subscription, subscribed for longer, still answers.
    await subscribed.send(operation_message(protocol, 2, "{ __typename }"))
    assert (await receive(subscribed))["payload"] == {"data": {"__typename": "Query"}}
    assert server.services.hub.waiting == 1
    # Once its subscription ends, it is idle too.
    await subscribed.send(stop_message(protocol, 1))
    assert await closed(subscribed, also=("complete",)) == 1000  # legacy answers `stop`
    await wait_for_waiters(server, 0)
