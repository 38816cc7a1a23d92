"""Who is asking over WebSockets, on both protocols (graphql-transport-ws and graphql-ws):
refusals at `connection_init` or before it, the accepted forms of a key (the
`connection_init` payload, the upgrade header, and which one counts), and a key revoked
while its WebSocket is open."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from api import auth
from db import tenants
from tests.authentication_helpers import (
    PROTOCOLS,
    TRANSPORT_WS,
    TYPENAME,
    UNKNOWN_KEY,
    VIEWER,
    next_message,
    open_socket,
    refusal,
    run_operation,
    stored,
)
from tests.conftest import REFERENCE_FEN, ApiFactory, Server
from tests.graphql_client import COMPLETED, SUBMIT, submit


def assert_refused(
    protocol: str, answer: tuple[list[dict[str, Any]], int | None], message: str
) -> None:
    """Closed with 4401 (graphql-transport-ws, the reason saying why) or after a
    `connection_error` with the UNAUTHENTICATED error (graphql-ws)."""
    messages, code = answer
    assert code == 4401, answer
    if protocol == TRANSPORT_WS:
        assert messages == [], answer
    else:
        assert messages == [
            {
                "type": "connection_error",
                "payload": {"message": message, "extensions": {"code": "UNAUTHENTICATED"}},
            }
        ], answer


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, auth.KEY_NEEDED_ON_WEBSOCKET),
        ({"authorization": ""}, auth.KEY_NEEDED_ON_WEBSOCKET),
        ({"authorization": f"Bearer {UNKNOWN_KEY}"}, auth.UNKNOWN_KEY),
        ({"authorization": UNKNOWN_KEY}, auth.NOT_BEARER),
        ({"authorization": 42}, auth.NOT_BEARER),
    ],
    ids=["no key", "an empty key", "an unknown key", "no scheme", "not a string"],
)
async def test_without_a_usable_key_a_websocket_is_refused_at_connection_init(
    api: Server, protocol: str, payload: dict[str, Any], message: str
) -> None:
    socket = await open_socket(api, protocol, payload)
    try:
        assert_refused(protocol, await refusal(socket), message)
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_operation_before_connection_init_runs_nothing(
    api: Server, protocol: str, database: AsyncEngine
) -> None:
    async with connect(api.ws_url, subprotocols=[Subprotocol(protocol)]) as socket:
        kind = "subscribe" if protocol == TRANSPORT_WS else "start"
        mutation = {"query": SUBMIT, "variables": {"input": {"fen": REFERENCE_FEN}}}
        await socket.send(json.dumps({"id": "1", "type": kind, "payload": mutation}))
        assert (await refusal(socket))[1] == 4401
    assert await stored(database) == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "where", ["the connection_init payload", "the upgrade request", "Authorization in capitals"]
)
async def test_a_key_opens_a_websocket_from_the_payload_or_the_upgrade(
    api: Server, protocol: str, where: str
) -> None:
    bearer = f"Bearer {api.key}"
    if where == "the upgrade request":
        socket = await open_socket(api, protocol, headers={"authorization": bearer})
    elif where == "the connection_init payload":
        socket = await open_socket(api, protocol, {"authorization": bearer})
    else:
        socket = await open_socket(api, protocol, {"Authorization": bearer})
    try:
        assert (await next_message(socket))["type"] == "connection_ack"
        answer = await run_operation(socket, protocol, VIEWER)
        assert answer == {"data": {"viewer": {"name": "tests", "scopes": ["ANALYSE"]}}}
    finally:
        await socket.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_payload_key_is_the_one_that_counts(api: Server, protocol: str) -> None:
    socket = await open_socket(
        api,
        protocol,
        {"authorization": f"Bearer {api.admin_key}"},
        headers={"authorization": f"Bearer {api.key}"},
    )
    try:
        assert (await next_message(socket))["type"] == "connection_ack"
        assert (await run_operation(socket, protocol, VIEWER))["data"]["viewer"]["name"] == "admin"
    finally:
        await socket.close()


async def wait_for_waiters(server: Server, count: int) -> None:
    async with asyncio.timeout(10):
        while server.services.hub.waiting != count:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_key_revoked_while_its_websocket_is_open_stops_working_within_seconds(
    start_api: ApiFactory, pool: asyncpg.Pool, protocol: str
) -> None:
    server = await start_api(key_cache_seconds=0.2)
    _, secret = await tenants.create(pool, "carol")
    analysis = await submit(server.http_url, fen=REFERENCE_FEN, key=secret)
    revoked = await open_socket(server, protocol, {"authorization": f"Bearer {secret}"})
    kept = await open_socket(server, protocol, {"authorization": f"Bearer {server.key}"})
    try:
        for socket in (revoked, kept):
            assert (await next_message(socket))["type"] == "connection_ack"
        kind = "subscribe" if protocol == TRANSPORT_WS else "start"
        payload = {"query": COMPLETED, "variables": {"id": analysis["id"]}}
        await revoked.send(json.dumps({"id": "1", "type": kind, "payload": payload}))
        await wait_for_waiters(server, 1)
        assert await tenants.revoke(pool, "carol")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        answer = await refusal(revoked)  # bounded: next_message waits 10 s at most
        assert_refused(protocol, answer, auth.REVOKED)
        assert loop.time() - asked < 5
        await wait_for_waiters(server, 0)  # its subscription ended with it
        # Another key's connection goes on.
        answer = await run_operation(kept, protocol, TYPENAME)
        assert answer == {"data": {"__typename": "Query"}}
        assert len(server.services.sockets) == 1
    finally:
        await revoked.close()
        await kept.close()
    async with asyncio.timeout(5):
        while len(server.services.sockets):
            await asyncio.sleep(0.01)
