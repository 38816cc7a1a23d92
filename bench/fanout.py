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
from websockets.exceptions import ConnectionClosed

from bench import services
from db.settings import asyncpg_dsn

COMPLETED = "subscription($id: ID!) { analysisCompleted(id: $id) { id status } }"
FEN = "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
TIMEOUT_SECONDS = 300
HANDSHAKES_AT_ONCE = 50
"""Connections opening at one time: a flood of handshakes only measures the backlog."""


@dataclass(frozen=True)
class FanOut:
    subscribers: int
    events: int
    not_connected: int
    api_rss_idle_mb: float
    api_rss_subscribed_mb: float
    database_connections: int
    subscribe_seconds: float
    delivery_seconds: float

    @property
    def kb_per_subscriber(self) -> float:
        connected = max(self.subscribers - self.not_connected, 1)
        return (self.api_rss_subscribed_mb - self.api_rss_idle_mb) * 1024 / connected


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def subscribe_all(ws_url: str, ids: list[str]) -> None:
    """One connection per subscriber; print "ready" once all are in (or given up on),
    then a JSON line: the events that arrived and the subscribers that never got in."""
    received = joined = failed = 0
    everyone_in = asyncio.Event()
    all_heard = asyncio.Event()
    handshakes = asyncio.Semaphore(HANDSHAKES_AT_ONCE)

    def settle() -> None:
        if joined + failed == len(ids):
            everyone_in.set()
        if received == joined and everyone_in.is_set():
            all_heard.set()

    async def subscriber(analysis_id: str) -> None:
        nonlocal received, joined, failed
        for _attempt in range(3):
            try:
                async with handshakes:
                    ws = await connect(
                        ws_url,
                        subprotocols=["graphql-transport-ws"],
                        open_timeout=60,  # type: ignore[list-item]
                    )
                    await ws.send(json.dumps({"type": "connection_init"}))
                    await ws.recv()
                    payload = {"query": COMPLETED, "variables": {"id": analysis_id}}
                    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                break
            except (OSError, TimeoutError, ConnectionClosed):
                await asyncio.sleep(0.5)
        else:
            failed += 1
            settle()
            return
        joined += 1
        settle()
        async with ws:
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "next":
                    received += 1
                    settle()
                    return

    tasks = [asyncio.create_task(subscriber(analysis_id)) for analysis_id in ids]
    await asyncio.wait_for(everyone_in.wait(), TIMEOUT_SECONDS)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    with contextlib.suppress(TimeoutError):  # then report how many did arrive
        await asyncio.wait_for(all_heard.wait(), TIMEOUT_SECONDS)
    sys.stdout.write(json.dumps({"events": received, "not_connected": failed}) + "\n")
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
            counts = json.loads(line)
            events = int(counts["events"])
            not_connected = int(counts["not_connected"])
    finally:
        await connection.close()
    return FanOut(
        subscribers,
        events,
        not_connected,
        idle,
        loaded,
        int(database_connections),
        subscribed,
        delivered,
    )


if __name__ == "__main__":
    raise_file_limit()
    asyncio.run(subscribe_all(sys.argv[1], json.loads(Path(sys.argv[2]).read_text())))
