"""`analysisCompleted` over real WebSockets, on both subprotocols."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from websockets.asyncio.client import connect

from db import claims
from db.models import ResultLine
from tests.conftest import REFERENCE_FEN, Server
from tests.graphql_client import (
    COMPLETED,
    authorization,
    submit,
    subscribe_graphql_ws,
    subscribe_transport_ws,
)

PROTOCOLS = {"graphql-transport-ws": subscribe_transport_ws, "graphql-ws": subscribe_graphql_ws}
DATA = {"graphql-transport-ws": "next", "graphql-ws": "data"}
LINE = ResultLine(
    rank=1, centipawn_score=None, mate_score=-2, pv=("c2c1",), pv_san=("Rc1+",), depth=1
)


async def wait_for_waiters(api: Server, count: int) -> None:
    hub = api.services.hub
    async with asyncio.timeout(10):
        while hub.waiting != count:
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
async def test_emits_once_when_the_worker_finishes(
    api: Server, protocol: str, pool: asyncpg.Pool
) -> None:
    submitted = await submit(api.http_url, fen=REFERENCE_FEN)
    subscription = asyncio.create_task(
        PROTOCOLS[protocol](api.ws_url, COMPLETED, {"id": submitted["id"]})
    )
    await wait_for_waiters(api, 1)
    # Play the worker's part by hand: claim and finish through the queue.
    job = await claims.claim_next(pool, "test-worker", 15)
    assert job is not None
    assert await claims.finish(pool, job, "test-worker", [LINE], "Stockfish 15.1")
    messages = await asyncio.wait_for(subscription, 10)
    assert [message["type"] for message in messages] == [DATA[protocol], "complete"]
    analysis = messages[0]["payload"]["data"]["analysisCompleted"]
    assert analysis["id"] == submitted["id"]
    assert analysis["status"] == "DONE"
    assert analysis["result"][0]["mateScore"] == -2
    assert api.services.hub.waiting == 0


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
async def test_subscribing_after_completion_emits_at_once(api: Server, protocol: str) -> None:
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    submitted = await submit(api.http_url, fen=mated)
    assert submitted["status"] == "DONE"
    messages = await PROTOCOLS[protocol](api.ws_url, COMPLETED, {"id": submitted["id"]}, 5)
    assert [message["type"] for message in messages] == [DATA[protocol], "complete"]
    assert messages[0]["payload"]["data"]["analysisCompleted"]["result"] == []


@pytest.mark.usefixtures("worker")
async def test_reference_case_with_the_real_worker_on_legacy_protocol(api: Server) -> None:
    submitted = await submit(api.http_url, fen=REFERENCE_FEN, timeLimit=2.0)
    messages = await subscribe_graphql_ws(api.ws_url, COMPLETED, {"id": submitted["id"]})
    analysis = messages[0]["payload"]["data"]["analysisCompleted"]
    assert analysis["status"] == "DONE"
    assert analysis["result"][0]["mateScore"] == -2
    assert analysis["result"][0]["pv"][:3] == ["c2c1", "e5e1", "c1e1"]


@pytest.mark.parametrize(
    ("analysis_id", "code"),
    [("00000000-0000-0000-0000-000000000000", "NOT_FOUND"), ("nope", "BAD_USER_INPUT")],
)
async def test_unknown_or_malformed_id_is_an_error(
    api: Server, analysis_id: str, code: str
) -> None:
    messages = await subscribe_transport_ws(api.ws_url, COMPLETED, {"id": analysis_id}, 5)
    errors = [m for m in messages if m["type"] in ("next", "error")]
    payload = errors[0]["payload"]
    error = payload[0] if isinstance(payload, list) else payload["errors"][0]
    assert error["extensions"]["code"] == code
    assert api.services.hub.waiting == 0


async def test_a_dropped_subscription_leaves_no_waiter(api: Server) -> None:
    submitted = await submit(api.http_url, fen=REFERENCE_FEN)
    async with connect(api.ws_url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(
            json.dumps({"type": "connection_init", "payload": authorization(api.key)})
        )
        await asyncio.wait_for(socket.recv(), 5)
        for number in range(20):
            await socket.send(
                json.dumps(
                    {
                        "id": str(number),
                        "type": "subscribe",
                        "payload": {"query": COMPLETED, "variables": {"id": submitted["id"]}},
                    }
                )
            )
        await wait_for_waiters(api, 20)
    await wait_for_waiters(api, 0)
