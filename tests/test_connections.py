"""Connections under load: a burst on keep-alive connections while subscribers wait, and
the bound on what one process holds at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import chess
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ApiFactory, Server
from tests.graphql_client import COMPLETED, SUBMIT, authorization

CONNECTIONS = 50
SUBMISSIONS_EACH = 20
SUBSCRIBERS = 200


@contextlib.asynccontextmanager
async def subscribed(server: Server, analysis_id: str) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws connection with one subscription waiting."""
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": authorization(server.key)}
        await socket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        payload = {"query": COMPLETED, "variables": {"id": analysis_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        yield socket


async def test_a_burst_on_keep_alive_connections_is_answered_in_full(
    start_api: ApiFactory, database: AsyncEngine
) -> None:
    server = await start_api(max_queued=100_000)
    body = {"query": SUBMIT, "variables": {"input": {"fen": chess.STARTING_FEN}}}
    async with httpx.AsyncClient(timeout=30, headers=server.headers) as client:
        first = (await client.post(server.http_url, json=body)).json()["data"]["submitAnalysis"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(SUBSCRIBERS):
            await stack.enter_async_context(subscribed(server, first["id"]))
        await asyncio.wait_for(_until(lambda: server.services.hub.waiting >= SUBSCRIBERS), 30)

        async def keep_alive_client() -> list[int]:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(
                timeout=30, limits=limits, headers=server.headers
            ) as client:
                statuses = []
                for _ in range(SUBMISSIONS_EACH):
                    response = await client.post(server.http_url, json=body)
                    assert "errors" not in response.json(), response.text
                    statuses.append(response.status_code)
                return statuses

        answered = await asyncio.wait_for(
            asyncio.gather(*(keep_alive_client() for _ in range(CONNECTIONS))), 120
        )
        assert [status for statuses in answered for status in statuses] == [200] * (
            CONNECTIONS * SUBMISSIONS_EACH
        )
        assert server.services.hub.waiting == SUBSCRIBERS, "every subscriber still waits"
    async with database.connect() as connection:
        stored = await connection.scalar(text("SELECT count(*) FROM analyses"))
    assert stored == 1 + CONNECTIONS * SUBMISSIONS_EACH


async def test_past_the_connection_bound_requests_and_websockets_are_refused_clearly(
    start_api: ApiFactory,
) -> None:
    server = await start_api(max_connections=10)
    async with httpx.AsyncClient(timeout=10, headers=server.headers) as client:
        submitted = await client.post(
            server.http_url,
            json={"query": SUBMIT, "variables": {"input": {"fen": chess.STARTING_FEN}}},
        )
    analysis_id = submitted.json()["data"]["submitAnalysis"]["id"]
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(10):
            await stack.enter_async_context(subscribed(server, analysis_id))
        async with httpx.AsyncClient(timeout=10, headers=server.headers) as client:
            refused = await client.post(server.http_url, json={"query": "{ __typename }"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 10)
            assert socket.close_code == 1013
    # The subscribers gone, the process serves again.
    async with httpx.AsyncClient(timeout=10, headers=server.headers) as client:
        served = await client.post(server.http_url, json={"query": "{ __typename }"})
    assert served.json() == {"data": {"__typename": "Query"}}


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
