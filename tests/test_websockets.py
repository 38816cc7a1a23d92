"""WebSocket hygiene: init deadline, keep-alive, subscription cap, no leaked waiters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ApiFactory, Server
from tests.graphql_client import COMPLETED, submit

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
    await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert (await receive(socket))["type"] == "connection_ack"
    return socket


def subscribe_message(protocol: str, number: int, analysis_id: str) -> str:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    payload = {"query": COMPLETED, "variables": {"id": analysis_id}}
    return json.dumps({"id": str(number), "type": kind, "payload": payload})


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
        assert refused["type"] == "error"
        assert refused["id"] == "3"
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
