"""`analysisProgress`: a search as it deepens, over both WebSocket protocols and HTTP
multipart. The worker's part (claim, publish, finish) is played by hand through the
queue's own statements, so that each report is sent exactly when the test says."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from db import claims, progress
from db.models import ResultLine
from tests.conftest import Server
from tests.graphql_client import authorization, submit

PROGRESS = """
subscription Progress($id: ID!) {
  analysisProgress(id: $id) {
    analysis { id status startedAt result { pv } }
    depth nodes elapsed
    lines { rank pv pvSan centipawnScore mateScore winPercent wdl { win draw loss } }
  }
}
"""
ITALIAN = "r1bqk1nr/pppp1ppp/2n5/2b1p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4"
MULTIPART = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'


def report(depth: int, moves: tuple[str, ...] = ("e1g1",), score: int = 30) -> ResultLine:
    return ResultLine(1, score, None, pv=moves, pv_san=("O-O",), depth=depth, wdl=(300, 600, 100))


class Subscription:
    """One subscription over one WebSocket protocol, read message by message."""

    def __init__(self, socket: ClientConnection, protocol: str) -> None:
        self.socket = socket
        self.protocol = protocol

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        """The next data message's `analysisProgress`, or {"complete": True}."""
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
            if message["type"] in ("ping", "ka"):
                if message["type"] == "ping":
                    await self.socket.send(json.dumps({"type": "pong"}))
                continue
            if message["type"] == "complete":
                return {"complete": True}
            assert message["type"] in ("next", "data"), message
            payload = message["payload"]
            assert "errors" not in payload, payload
            data: dict[str, Any] = payload["data"]["analysisProgress"]
            return data


async def subscribe(api: Server, protocol: str, analysis_id: str) -> AsyncIterator[Subscription]:
    async with connect(api.ws_url, subprotocols=[protocol]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": authorization(api.key)}
        await socket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        start = "subscribe" if protocol == "graphql-transport-ws" else "start"
        payload = {"query": PROGRESS, "variables": {"id": analysis_id}}
        await socket.send(json.dumps({"id": "1", "type": start, "payload": payload}))
        yield Subscription(socket, protocol)


async def watched(pool: asyncpg.Pool, run: uuid.UUID) -> None:
    """Wait until `run` is marked as watched (the API marks it soon after a subscription)."""
    async with asyncio.timeout(10):
        while not await pool.fetchval(
            "SELECT count(*) FROM analysis_progress WHERE run_id = $1 AND watched_until > now()",
            run,
        ):
            await asyncio.sleep(0.01)


async def publish(pool: asyncpg.Pool, run: uuid.UUID, lines: list[ResultLine]) -> bool:
    depth = lines[0].depth
    return await progress.publish(
        pool, run, depth=depth, nodes=1000 * depth, elapsed=0.1 * depth, lines=lines
    )


async def finish(pool: asyncpg.Pool, job: claims.ClaimedJob, lines: list[ResultLine]) -> None:
    searched = claims.Searched(depth=lines[0].depth, nodes=99_000, seconds=1.0)
    outcome = claims.Outcome.of(
        job, "w", claims.Ending.DONE, result=lines, engine_name="Stockfish", searched=searched
    )
    assert await claims.end(pool, outcome) is not None


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_the_search_deepens_then_ends(api: Server, pool: asyncpg.Pool, protocol: str) -> None:
    submitted = await submit(api.http_url, fen=ITALIAN, depthLimit=30, timeLimit=30.0)
    run = uuid.UUID(submitted["id"])
    async for subscription in subscribe(api, protocol, submitted["id"]):
        await watched(pool, run)
        job = await claims.claim_next(pool, "w", 30.0)
        assert job is not None and job.id == run
        assert job.watched, "the worker learns at its claim that someone listens"

        assert await publish(pool, run, [report(5)])
        first = await subscription.next()
        assert (first["depth"], first["nodes"], first["elapsed"]) == (5, 5000, 0.5)
        assert first["analysis"]["status"] == "RUNNING"
        [line] = first["lines"]
        assert line["pv"] == ["e1g1"] and line["wdl"] == {"win": 300, "draw": 600, "loss": 100}
        assert 52 < line["winPercent"] < 53, "Lichess's Win% of +0.30"

        assert await publish(pool, run, [report(6, ("d2d3",), -15)])
        second = await subscription.next()
        assert second["depth"] == 6 and second["lines"][0]["pv"] == ["d2d3"]
        assert second["lines"][0]["winPercent"] < 50

        await finish(pool, job, [report(12, ("c2c3",))])
        last = await subscription.next()
        assert last["analysis"]["status"] == "DONE"
        assert last["analysis"]["result"] == [{"pv": ["c2c3"]}]
        assert last["depth"] == 12 and last["lines"][0]["pv"] == ["c2c3"]
        assert await subscription.next() == {"complete": True}
    assert api.services.progress.following == 0
    assert api.services.hub.waiting == 0


async def test_a_late_listener_gets_the_latest_state_at_once(
    api: Server, pool: asyncpg.Pool
) -> None:
    submitted = await submit(api.http_url, fen=ITALIAN, depthLimit=30, timeLimit=30.0)
    run = uuid.UUID(submitted["id"])
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None and not job.watched
    assert not await publish(pool, run, [report(3)]), "nobody listens: nothing published"
    async for early in subscribe(api, "graphql-transport-ws", submitted["id"]):
        await watched(pool, run)
        assert await publish(pool, run, [report(9)])
        assert (await early.next())["depth"] == 9
        async for late in subscribe(api, "graphql-transport-ws", submitted["id"]):
            state = await late.next()
            assert state["depth"] == 9 and state["analysis"]["status"] == "RUNNING"
            await finish(pool, job, [report(10)])
            assert (await late.next())["analysis"]["status"] == "DONE"
            assert await late.next() == {"complete": True}


async def test_a_finished_analysis_is_emitted_once(api: Server) -> None:
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    submitted = await submit(api.http_url, fen=mated)
    async for subscription in subscribe(api, "graphql-ws", submitted["id"]):
        last = await subscription.next()
        assert last["analysis"]["status"] == "DONE" and last["lines"] == []
        assert await subscription.next() == {"complete": True}


async def test_over_http_multipart(api: Server, pool: asyncpg.Pool) -> None:
    submitted = await submit(api.http_url, fen=ITALIAN, depthLimit=30, timeLimit=30.0)
    run = uuid.UUID(submitted["id"])
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None

    async def read() -> str:
        async with (
            httpx.AsyncClient(timeout=20, headers=api.headers) as client,
            client.stream(
                "POST",
                api.http_url,
                json={"query": PROGRESS, "variables": {"id": submitted["id"]}},
                headers={"accept": MULTIPART},
            ) as response,
        ):
            assert response.headers["content-type"].startswith("multipart/mixed")
            return (await response.aread()).decode()

    body = asyncio.create_task(read())
    await watched(pool, run)
    assert await publish(pool, run, [report(4)])
    async with asyncio.timeout(10):  # the report reaches the subscription, then the end
        while not api.services.progress.following or not any(
            f.latest for fs in api.services.progress._followers.values() for f in fs
        ):
            await asyncio.sleep(0.01)
    await finish(pool, job, [report(8)])
    text = await asyncio.wait_for(body, 20)
    parts = [part for part in text.split("--graphql") if '"payload"' in part]
    events = [json.loads(part[part.index("{") :])["payload"]["data"] for part in parts]
    depths = [event["analysisProgress"]["depth"] for event in events]
    statuses = [event["analysisProgress"]["analysis"]["status"] for event in events]
    assert depths == [4, 8] and statuses == ["RUNNING", "DONE"]


async def test_a_follower_of_a_shared_run_sees_its_search(api: Server, pool: asyncpg.Pool) -> None:
    first = await submit(api.http_url, fen=ITALIAN, depthLimit=25, timeLimit=30.0)
    second = await submit(api.http_url, fen=ITALIAN, depthLimit=25, timeLimit=30.0)
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None and job.id == uuid.UUID(first["id"])
    async for subscription in subscribe(api, "graphql-transport-ws", second["id"]):
        await watched(pool, job.id)
        assert await publish(pool, job.id, [report(7)])
        state = await subscription.next()
        assert state["analysis"]["id"] == second["id"] and state["depth"] == 7
        await finish(pool, job, [report(11)])
        last = await subscription.next()
        assert last["analysis"]["id"] == second["id"] and last["analysis"]["status"] == "DONE"


async def test_long_lines_travel_whatever_their_size(api: Server, pool: asyncpg.Pool) -> None:
    """A notification carries 8000 bytes at most: ten lines of a hundred moves are far
    more, and reach the subscriber whole (the notification carries the run's id alone)."""
    submitted = await submit(
        api.http_url, fen=ITALIAN, depthLimit=60, timeLimit=30.0, numMovesToReturn=10
    )
    run = uuid.UUID(submitted["id"])
    moves = tuple(["g1f3", "f3g1"] * 50)
    lines = [
        ResultLine(rank, 10, None, pv=moves, pv_san=("Nf3", "Ng1") * 50, depth=40)
        for rank in range(1, 11)
    ]
    assert len(json.dumps([line.to_json() for line in lines])) > 8000
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    async for subscription in subscribe(api, "graphql-transport-ws", submitted["id"]):
        await watched(pool, run)
        assert await publish(pool, run, lines)
        state = await subscription.next()
        assert len(state["lines"]) == 10 and all(len(x["pv"]) == 100 for x in state["lines"])


@pytest.mark.parametrize(
    ("analysis_id", "code"),
    [(str(uuid.uuid4()), "NOT_FOUND"), ("nope", "BAD_USER_INPUT")],
)
async def test_an_unknown_id_is_an_error(api: Server, analysis_id: str, code: str) -> None:
    async with connect(api.ws_url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(
            json.dumps({"type": "connection_init", "payload": authorization(api.key)})
        )
        await asyncio.wait_for(socket.recv(), 10)
        payload = {"query": PROGRESS, "variables": {"id": analysis_id}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == code
    assert api.services.progress.following == 0
