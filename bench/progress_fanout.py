"""Progress fan-out: N WebSocket listeners of one running analysis's `analysisProgress`
on one API process. The worker's part is played by hand through the queue's own
statements (as `tests/test_progress.py` does): the analysis is claimed, `reports`
reports are published at `PUBLISH_RATE` a second (`db.progress.publish`, as a worker's
slot would), then it is finished. For each report: the time from publishing it to the
last listener reading it, and how many listeners read it (a listener only ever gets
the newest state: a report overtaken by the next before it was sent is coalesced).

`python -m bench.progress_fanout WS_URL ID LISTENERS` is the listeners' process: it
prints a JSON line once all have subscribed (or given up), one each time every
listener has read a report (`{"heard": depth}`), and one with the counts once all have
completed (or the deadline passed). Times are CLOCK_MONOTONIC, one clock for every
process on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import chess
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench import services
from bench.end_to_end import percentiles
from bench.fanout import HANDSHAKES_AT_ONCE, raise_file_limit, rss_mb
from db import claims, progress
from db.models import ResultLine
from db.session import create_pool
from db.settings import DatabaseSettings

FEN = "r1bqk1nr/pppp1ppp/2n5/2b1p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4"
SUBMIT = """mutation($fen: String!) {
  submitAnalysis(input: {fen: $fen, numMovesToReturn: 3, depthLimit: 40, timeLimit: 60}) {
    id status
  }
}"""
PROGRESS = """subscription($id: ID!) {
  analysisProgress(id: $id) {
    analysis { id status }
    depth nodes elapsed
    lines { rank pvSan centipawnScore mateScore winPercent wdl { win draw loss } }
  }
}"""
PROTOCOL = Subprotocol("graphql-transport-ws")
PUBLISH_RATE = 4.0
"""Reports a second: the most a worker publishes for one search."""
WARM_UP_DEPTH = 1
"""The first report, published once all have subscribed and not measured: once every
listener has read it, every subscription is registered in the API."""
FINAL_DEPTH = 30
TIMEOUT_SECONDS = 60
LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class ProgressFanOut:
    listeners: int
    not_connected: int
    reports: int
    interval_seconds: float
    delivery_ms: dict[str, float]
    """Per report: publishing it to the last listener reading it."""
    first_delivery_ms: dict[str, float]
    """Per report: publishing it to the first listener reading it."""
    per_report: list[dict[str, float]]
    """Each report: its depth, the listeners that read it, the first and last times."""
    delivered: int
    """Reports read, over all listeners (`expected` when none was coalesced)."""
    expected: int
    final_events: int
    """Listeners that read the finished analysis (`DONE`)."""
    completed: int
    """Listeners whose subscription then completed."""
    final_ms: float
    """The analysis finished to the last listener reading it."""
    errors: int
    """Error messages the listeners read."""
    unwatched_reports: int
    """Publications that found nobody watching (0 expected)."""
    api_rss_idle_mb: float
    api_rss_subscribed_mb: float
    database_connections: int
    """The API's connections to PostgreSQL with every listener subscribed."""
    subscribe_seconds: float

    @property
    def coalesced(self) -> int:
        """Reports a listener never read because a newer one reached it first."""
        return self.expected - self.delivered

    @property
    def kb_per_listener(self) -> float:
        connected = max(self.listeners - self.not_connected, 1)
        return (self.api_rss_subscribed_mb - self.api_rss_idle_mb) * 1024 / connected


def clock() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def report_lines(depth: int) -> list[ResultLine]:
    """Three lines of `depth` plies from `FEN`, as a search at that depth would give."""
    board = chess.Board(FEN)
    lines: list[ResultLine] = []
    for rank, first in enumerate(sorted(board.legal_moves, key=str)[:3], start=1):
        position = board.copy(stack=False)
        moves: list[str] = []
        san: list[str] = []
        move: chess.Move | None = first
        while move is not None and len(moves) < depth:
            san.append(position.san(move))
            moves.append(move.uci())
            position.push(move)
            move = min(position.legal_moves, key=str, default=None)
        score = 40 - 15 * rank + depth
        lines.append(ResultLine(rank, score, None, tuple(moves), tuple(san), depth, (310, 600, 90)))
    return lines


class Tally:
    """What the listeners have read, and when everyone is in and everyone is done."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.joined = self.failed = self.errors = self.finals = self.completed = 0
        self.heard: dict[int, list[float]] = defaultdict(list)
        """Per report (its depth), when each listener read it."""
        self.last_final = 0.0
        self.everyone_in = asyncio.Event()
        self.everyone_done = asyncio.Event()

    def settle(self) -> None:
        if self.joined + self.failed == self.count:
            self.everyone_in.set()
        if self.completed == self.joined and self.everyone_in.is_set():
            self.everyone_done.set()

    def read(self, message: dict[str, Any]) -> None:
        """Count one data message; print `{"heard": depth}` once all read a report."""
        payload = message.get("payload") or {}
        if message.get("type") == "error" or payload.get("errors"):
            self.errors += 1
            return
        event = payload["data"]["analysisProgress"]
        if event["analysis"]["status"] != "RUNNING":
            self.finals += 1
            self.last_final = clock()
            return
        times = self.heard[event["depth"]]
        times.append(clock())
        if len(times) == self.joined and self.everyone_in.is_set():
            print_line({"heard": event["depth"]})

    def summary(self) -> dict[str, Any]:
        return {
            "heard": {
                depth: {"count": len(times), "first": min(times), "last": max(times)}
                for depth, times in self.heard.items()
            },
            "finals": self.finals,
            "last_final": self.last_final,
            "completed": self.completed,
            "errors": self.errors,
        }


async def open_listener(
    ws_url: str, analysis_id: str, handshakes: asyncio.Semaphore
) -> ClientConnection | None:
    """A connection with its subscription sent; None after three failed tries."""
    for _attempt in range(3):
        try:
            async with handshakes:
                ws = await connect(ws_url, subprotocols=[PROTOCOL], open_timeout=60)
                await ws.send(json.dumps({"type": "connection_init"}))
                await ws.recv()
                payload = {"query": PROGRESS, "variables": {"id": analysis_id}}
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                return ws
        except (OSError, TimeoutError, ConnectionClosed):
            await asyncio.sleep(0.5)
    return None


async def listen_all(ws_url: str, analysis_id: str, count: int) -> None:
    """`count` listeners, one connection each, of one analysis's progress (see above)."""
    tally = Tally(count)
    handshakes = asyncio.Semaphore(HANDSHAKES_AT_ONCE)

    async def listener() -> None:
        ws = await open_listener(ws_url, analysis_id, handshakes)
        if ws is None:
            tally.failed += 1
            tally.settle()
            return
        tally.joined += 1
        tally.settle()
        async with ws:
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif message["type"] == "complete":
                    tally.completed += 1
                    tally.settle()
                    return
                elif message["type"] in ("next", "error"):
                    tally.read(message)

    tasks = [asyncio.create_task(listener()) for _ in range(count)]
    await asyncio.wait_for(tally.everyone_in.wait(), TIMEOUT_SECONDS)
    print_line({"joined": tally.joined, "not_connected": tally.failed})
    with contextlib.suppress(TimeoutError):  # then report what did arrive
        await asyncio.wait_for(tally.everyone_done.wait(), TIMEOUT_SECONDS)
    print_line(tally.summary())
    for task in tasks:
        task.cancel()


def print_line(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


class Listeners:
    """The listeners' process, read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        self.process = process
        self.stdout = process.stdout

    async def next(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.stdout.readline(), TIMEOUT_SECONDS)
        if not line:
            raise RuntimeError("the listeners' process ended early")
        value: dict[str, Any] = json.loads(line)
        return value

    async def heard(self, depth: int) -> None:
        """Wait until every listener has read the report of `depth`."""
        while (await self.next()).get("heard") != depth:
            pass

    async def summary(self) -> dict[str, Any]:
        """The counts, after every listener completed (skipping the `heard` lines)."""
        while True:
            value = await self.next()
            if "completed" in value:
                return value


async def submit(port: int) -> uuid.UUID:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": SUBMIT, "variables": {"fen": FEN}}
        )
    return uuid.UUID(response.json()["data"]["submitAnalysis"]["id"])


async def watched(pool: asyncpg.Pool, run: uuid.UUID) -> None:
    """Wait until the API has marked `run` as watched."""
    async with asyncio.timeout(TIMEOUT_SECONDS):
        while not await pool.fetchval(
            "SELECT count(*) FROM analysis_progress WHERE run_id = $1 AND watched_until > now()",
            run,
        ):
            await asyncio.sleep(0.01)


async def publish(pool: asyncpg.Pool, run: uuid.UUID, depth: int) -> bool:
    return await progress.publish(
        pool,
        run,
        depth=depth,
        nodes=50_000 * depth,
        elapsed=0.05 * depth,
        lines=report_lines(depth),
    )


async def run(url: str, log_dir: Path, listeners: int, reports: int) -> ProgressFanOut:
    raise_file_limit()
    interval = 1 / PUBLISH_RATE
    pool = await create_pool(DatabaseSettings(pool_size=2), url, application_name="bench-progress")
    try:
        async with services.running(url, log_dir, workers=0) as (port, api):
            analysis = await submit(port)
            job = await claims.claim_next(pool, "bench", LEASE_SECONDS)
            assert job is not None and job.id == analysis, job
            idle = rss_mb(api.pid)
            started = clock()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.progress_fanout",
                f"ws://127.0.0.1:{port}/graphql",
                str(analysis),
                str(listeners),
                stdout=subprocess.PIPE,
            )
            listening = Listeners(process)
            joined = await listening.next()
            subscribe_seconds = clock() - started
            await watched(pool, analysis)
            await asyncio.sleep(1)  # let the last subscriptions settle in the API
            loaded = rss_mb(api.pid)
            database_connections = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'chess-analysis-api%'"
            )
            unwatched = int(not await publish(pool, analysis, WARM_UP_DEPTH))
            await listening.heard(WARM_UP_DEPTH)

            published: dict[int, float] = {}
            tick = clock()
            for depth in range(WARM_UP_DEPTH + 1, WARM_UP_DEPTH + 1 + reports):
                await asyncio.sleep(max(0.0, tick - clock()))
                published[depth] = clock()
                unwatched += not await publish(pool, analysis, depth)
                tick += interval
            await asyncio.sleep(max(0.0, tick - clock()))
            finished = clock()
            lines = report_lines(FINAL_DEPTH)
            searched = claims.Searched(FINAL_DEPTH, 50_000 * FINAL_DEPTH, 0.05 * FINAL_DEPTH)
            outcome = claims.Outcome.of(
                job,
                "bench",
                claims.Ending.DONE,
                result=lines,
                engine_name="(by hand)",
                searched=searched,
            )
            assert await claims.end(pool, outcome) is not None
            counts = await listening.summary()
            await process.wait()
    finally:
        await pool.close()
    heard = {int(depth): value for depth, value in counts["heard"].items()}
    per_report = [
        {
            "depth": depth,
            "listeners": heard[depth]["count"],
            "first_ms": (heard[depth]["first"] - at) * 1000,
            "last_ms": (heard[depth]["last"] - at) * 1000,
        }
        for depth, at in published.items()
        if depth in heard  # read by no one: every listener had a newer one first
    ]
    connected = int(joined["joined"])
    return ProgressFanOut(
        listeners=listeners,
        not_connected=int(joined["not_connected"]),
        reports=reports,
        interval_seconds=interval,
        delivery_ms=percentiles_ms([report["last_ms"] for report in per_report]),
        first_delivery_ms=percentiles_ms([report["first_ms"] for report in per_report]),
        per_report=per_report,
        delivered=sum(int(report["listeners"]) for report in per_report),
        expected=connected * reports,
        final_events=int(counts["finals"]),
        completed=int(counts["completed"]),
        final_ms=(float(counts["last_final"]) - finished) * 1000,
        errors=int(counts["errors"]),
        unwatched_reports=int(unwatched),
        api_rss_idle_mb=idle,
        api_rss_subscribed_mb=loaded,
        database_connections=int(database_connections),
        subscribe_seconds=subscribe_seconds,
    )


def percentiles_ms(values: list[float]) -> dict[str, float]:
    """`bench.end_to_end.percentiles`, for any number of values (for one: that one)."""
    if len(values) < 2:
        return dict.fromkeys(("p50", "p95", "p99", "max"), values[0] if values else 0.0)
    return percentiles(values)


if __name__ == "__main__":
    raise_file_limit()
    asyncio.run(listen_all(sys.argv[1], sys.argv[2], int(sys.argv[3])))
