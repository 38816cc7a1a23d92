"""End to end through GraphQL: submitAnalysis over HTTP, analysisCompleted over WebSocket,
real Stockfish at depth 1, each a search of its own (`fresh`: the one position would
otherwise be answered from the cache). Latency is from sending the mutation to receiving
the event; "overhead" subtracts the engine's own time (the row's started_at to
finished_at)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from websockets.asyncio.client import connect

from bench import services
from db.settings import asyncpg_dsn

FEN = "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
SUBMIT = (
    "mutation($fen: String!) {"
    " submitAnalysis(input: {fen: $fen, depthLimit: 1, fresh: true}) { id } }"
)
COMPLETED = "subscription($id: ID!) { analysisCompleted(id: $id) { id status } }"
TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class EndToEnd:
    analyses: int
    clients: int
    submit_rate: float
    completion_rate: float
    latency_ms: dict[str, float]
    overhead_ms: dict[str, float]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cut[49], "p95": cut[94], "p99": cut[98], "max": ordered[-1]}


async def client(
    port: int, count: int, latencies: dict[str, float], submit_times: list[float]
) -> None:
    """Submit `count` analyses one after the other, each awaited by its subscription."""
    http_url = f"http://127.0.0.1:{port}/graphql"
    async with (
        httpx.AsyncClient(timeout=30) as http,
        connect(http_url.replace("http", "ws"), subprotocols=["graphql-transport-ws"]) as ws,  # type: ignore[list-item]
    ):
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for number in range(count):
            sent = time.perf_counter()
            response = await http.post(http_url, json={"query": SUBMIT, "variables": {"fen": FEN}})
            submit_times.append(time.perf_counter() - sent)
            analysis_id = response.json()["data"]["submitAnalysis"]["id"]
            operation = str(number)
            payload = {"query": COMPLETED, "variables": {"id": analysis_id}}
            await ws.send(json.dumps({"id": operation, "type": "subscribe", "payload": payload}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "next" and message.get("id") == operation:
                    latencies[analysis_id] = time.perf_counter() - sent
                    break


async def run(url: str, log_dir: Path, analyses: int, clients: int, slots: int) -> EndToEnd:
    latencies: dict[str, float] = {}
    submit_times: list[float] = []
    async with services.running(url, log_dir, workers=1, slots=slots) as (port, _):
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    client(port, analyses // clients, latencies, submit_times)
                    for _ in range(clients)
                )
            ),
            TIMEOUT_SECONDS,
        )
        elapsed = time.perf_counter() - started
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await connection.fetch(
            "SELECT id, extract(epoch FROM finished_at - started_at) AS engine FROM analyses"
            " WHERE id = ANY($1::uuid[])",
            [uuid.UUID(key) for key in latencies],
        )
    finally:
        await connection.close()
    engine_time = {str(row["id"]): float(row["engine"]) for row in rows}
    done = len(latencies)
    return EndToEnd(
        analyses=done,
        clients=clients,
        submit_rate=len(submit_times) / sum(submit_times) * clients,
        completion_rate=done / elapsed,
        latency_ms={k: v * 1000 for k, v in percentiles(list(latencies.values())).items()},
        overhead_ms={
            k: v * 1000
            for k, v in percentiles(
                [latency - engine_time[key] for key, latency in latencies.items()]
            ).items()
        },
    )
