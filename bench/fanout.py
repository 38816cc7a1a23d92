"""Subscription fan-out: N WebSocket subscribers on one API process, each waiting for its
own analysis. The subscribers live in a separate process; the analyses are finished by
one UPDATE (as a worker would, N times over), and every subscriber must hear of its own.

`python -m bench.fanout WS_URL IDS_FILE` is the subscriber process: it prints "ready"
once all have subscribed, then a JSON line with how many events arrived."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from websockets.asyncio.client import connect

from bench import services
from db.settings import asyncpg_dsn

COMPLETED = "subscription($id: ID!) { analysisCompleted(id: $id) { id status } }"
FEN = "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class FanOut:
    subscribers: int
    events: int
    api_rss_idle_mb: float
    api_rss_subscribed_mb: float
    database_connections: int
    subscribe_seconds: float
    delivery_seconds: float

    @property
    def kb_per_subscriber(self) -> float:
        return (self.api_rss_subscribed_mb - self.api_rss_idle_mb) * 1024 / self.subscribers


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def subscribe_all(ws_url: str, ids: list[str]) -> None:
    """One connection per subscriber; print "ready", then the events that arrive."""
    received = 0
    everyone_in = asyncio.Event()
    joined = 0
    all_heard = asyncio.Event()

    async def subscriber(analysis_id: str) -> None:
        nonlocal received, joined
        async with connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=60) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init"}))
            await ws.recv()
            payload = {"query": COMPLETED, "variables": {"id": analysis_id}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            joined += 1
            if joined == len(ids):
                everyone_in.set()
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "next":
                    received += 1
                    if received == len(ids):
                        all_heard.set()
                    return

    tasks = []
    for analysis_id in ids:
        tasks.append(asyncio.create_task(subscriber(analysis_id)))
        if len(tasks) % 200 == 0:
            await asyncio.sleep(0.05)  # pace the handshakes rather than flood the listener
    await asyncio.wait_for(everyone_in.wait(), TIMEOUT_SECONDS)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    with contextlib.suppress(TimeoutError):  # then report how many did arrive
        await asyncio.wait_for(all_heard.wait(), TIMEOUT_SECONDS)
    sys.stdout.write(json.dumps({"events": received}) + "\n")
    sys.stdout.flush()
    for task in tasks:
        task.cancel()


async def run(url: str, log_dir: Path, subscribers: int) -> FanOut:
    raise_file_limit()
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        ids = [
            str(row["id"])
            for row in await connection.fetch(
                "INSERT INTO analyses (fen, num_moves_to_return, time_limit)"
                " SELECT $1, 1, 1.0 FROM generate_series(1, $2) RETURNING id",
                FEN,
                subscribers,
            )
        ]
        ids_file = log_dir / f"fanout-{subscribers}.json"
        ids_file.write_text(json.dumps(ids))
        async with services.running(
            url, log_dir, workers=0, API_WS_MAX_SUBSCRIPTIONS="10", API_MAX_QUEUED="10000000"
        ) as (port, api):
            idle = rss_mb(api.pid)
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.fanout",
                f"ws://127.0.0.1:{port}/graphql",
                str(ids_file),
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), TIMEOUT_SECONDS)
            assert ready.strip() == b"ready", ready
            subscribed = time.perf_counter() - started
            await asyncio.sleep(1)  # let the last subscriptions settle in the API
            loaded = rss_mb(api.pid)
            database_connections = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'chess-analysis-api%'"
            )
            started = time.perf_counter()
            await connection.execute(
                "UPDATE analyses SET status = 'done', result = '[]', finished_at = now()"
                " WHERE status = 'queued'"
            )
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT_SECONDS)
            delivered = time.perf_counter() - started
            await process.wait()
            events = int(json.loads(line)["events"])
    finally:
        await connection.close()
    return FanOut(
        subscribers, events, idle, loaded, int(database_connections), subscribed, delivered
    )


if __name__ == "__main__":
    raise_file_limit()
    asyncio.run(subscribe_all(sys.argv[1], json.loads(Path(sys.argv[2]).read_text())))
