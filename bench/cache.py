"""The position cache and shared runs, through GraphQL, with a real worker and Stockfish.

- `latency`: one position is analysed once (depth 10), then the same request is
  submitted `count` times, one after the other on one keep-alive connection: the time
  from sending the mutation to reading its `DONE` answer from the cache. Then the
  throughput of cached answers from `concurrency` connections in a separate process
  (`python -m bench.cache URL SECONDS CONCURRENCY` prints one JSON line).
- `load`: `submissions` requests over `distinct` positions, one limit, sent
  `concurrency` at a time: how many engine searches ran (a row a worker claimed that
  carries its own run) and the wall time until every row had finished; with `fresh`,
  every request asks for a search of its own, for comparison. The requests go in a
  random order, or in `bursts` (each position's requests together, as when many
  clients follow one game), which is where concurrent submissions of one search meet;
  the deadlocks PostgreSQL detected are counted too.

Requests go out as raw HTTP/1.1 over asyncio streams, as in `bench.submit_load`: a
client library would spend more CPU per request than the cached answer costs the API,
on the same cores.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import chess

from bench import services
from bench.end_to_end import percentiles
from bench.submit_load import read_response
from db.session import create_pool
from db.settings import DatabaseSettings

FEN = "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
DEPTH_LIMIT = 10
TIME_LIMIT = 10.0
SUBMIT = """mutation($fen: String!, $depth: Int!, $time: Float!, $fresh: Boolean!) {
  submitAnalysis(input: {fen: $fen, depthLimit: $depth, timeLimit: $time, fresh: $fresh}) {
    id status cached result { rank pv centipawnScore mateScore depth }
  }
}"""
TIMEOUT_SECONDS = 110
POLL_SECONDS = 0.02
SEED = 2026


@dataclass(frozen=True)
class CachedLatency:
    submissions: int
    not_cached: int
    """Answers that were not `DONE` from the cache (0 expected)."""
    errors: int
    latency_ms: dict[str, float]
    """Sending the mutation to reading the whole answer, one request at a time."""
    searches: int
    """Engine searches that ran in all (1 expected: the first analysis)."""
    concurrency: int
    concurrent_seconds: float
    concurrent_answers: int
    concurrent_not_cached: int

    @property
    def concurrent_rate(self) -> float:
        """Cached answers a second from `concurrency` connections."""
        return self.concurrent_answers / self.concurrent_seconds


@dataclass(frozen=True)
class Load:
    submissions: int
    positions: int
    concurrency: int
    fresh: bool
    bursts: bool
    """Each position's requests sent one after the other (else in a random order)."""
    errors: int
    """Submissions refused or answered with an error."""
    error_messages: dict[str, int]
    deadlocks: int
    """Deadlocks PostgreSQL detected in the scenario's database (each costs a second,
    `deadlock_timeout`, and one of the statements)."""
    searches: int
    """Rows a worker claimed that carry their own run: the engine searches."""
    claims: int
    """Claims of those rows (a row given back and claimed again counts twice)."""
    cached: int
    """Rows answered from the position cache."""
    joined: int
    """Rows that joined another row's run."""
    not_done: int
    """Rows that ended other than DONE, or had not ended at the deadline."""
    positions_searched_again: int
    """Positions searched more than once (0 expected without `fresh`)."""
    positions_answered_differently: int
    """Positions whose rows did not all get the same lines (0 expected: one thread, a
    depth limit and a new game make Stockfish deterministic)."""
    submit_seconds: float
    """The first mutation sent to the last answer read."""
    wall_seconds: float
    """The first row created to the last row finished."""


@dataclass(frozen=True)
class SharedRuns:
    shared: Load
    fresh: Load
    bursts: Load
    """`shared` again, each position's requests sent together."""

    @property
    def searches_saved(self) -> float:
        """How many times fewer searches the cache and shared runs needed."""
        return self.fresh.searches / max(self.shared.searches, 1)

    @property
    def wall_time_ratio(self) -> float:
        """How many times longer everyone waited with a search each."""
        return self.fresh.wall_seconds / max(self.shared.wall_seconds, 1e-9)


class Connection:
    """One keep-alive HTTP/1.1 connection to the API's /graphql."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = (
            f"POST {parts.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            "content-type: application/json\r\n"
        )
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def request(self, fen: str, *, fresh: bool = False) -> bytes:
        """The bytes of one submission, to send as often as wanted."""
        variables = {"fen": fen, "depth": DEPTH_LIMIT, "time": TIME_LIMIT, "fresh": fresh}
        body = json.dumps({"query": SUBMIT, "variables": variables}).encode()
        return f"{self.head}content-length: {len(body)}\r\n\r\n".encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; the status and body of its answer."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(request)
        return await read_response(reader)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def answer_of(status: int, body: bytes) -> dict[str, object] | None:
    """The submission's answer, or None for an error."""
    if error_of(status, body) is not None:
        return None
    answer: dict[str, object] = json.loads(body)["data"]["submitAnalysis"]
    return answer


def error_of(status: int, body: bytes) -> str | None:
    """What went wrong with a submission (its first error's message), or None."""
    if status != 200:
        return f"HTTP {status}"
    errors = json.loads(body).get("errors")
    return str(errors[0]["message"]) if errors else None


def cached_answer(status: int, body: bytes) -> bool:
    answer = answer_of(status, body)
    return answer is not None and answer["status"] == "DONE" and answer["cached"] is True


async def wait_finished(pool: asyncpg.Pool, count: int) -> None:
    """Wait until `count` rows have ended (or the deadline passes)."""
    deadline = time.perf_counter() + TIMEOUT_SECONDS
    while time.perf_counter() < deadline:
        ended = await pool.fetchval(
            "SELECT count(*) FROM analyses WHERE status IN ('done', 'failed', 'canceled')"
        )
        if ended >= count:
            return
        await asyncio.sleep(POLL_SECONDS)


async def wait_disconnected(pool: asyncpg.Pool) -> None:
    """Wait until the service's processes have left the database: a backend reports its
    counts (`pg_stat_database`) as it exits."""
    deadline = time.perf_counter() + TIMEOUT_SECONDS
    while time.perf_counter() < deadline and await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name NOT LIKE 'bench-%'"
    ):
        await asyncio.sleep(POLL_SECONDS)


async def latency(
    url: str, log_dir: Path, count: int, concurrency: int, seconds: float, slots: int
) -> CachedLatency:
    """One real analysis, then `count` cached answers to the same request one at a time,
    then cached answers from `concurrency` connections for `seconds`."""
    pool = await create_pool(DatabaseSettings(pool_size=2), url, application_name="bench-cache")
    try:
        async with services.running(url, log_dir, workers=1, slots=slots) as (port, _):
            endpoint = f"http://127.0.0.1:{port}/graphql"
            connection = Connection(endpoint)
            request = connection.request(FEN)
            try:
                first = answer_of(*await connection.send(request))
                assert first is not None and first["status"] == "QUEUED", first
                await wait_finished(pool, 1)
                times: list[float] = []
                not_cached = errors = 0
                for _ in range(count):
                    sent = time.perf_counter()
                    status, body = await connection.send(request)
                    times.append(time.perf_counter() - sent)
                    answer = answer_of(status, body)
                    errors += answer is None
                    not_cached += answer is not None and not cached_answer(status, body)
            finally:
                connection.close()
            counts = await concurrent_load(endpoint, seconds, concurrency)
        searches = await pool.fetchval(
            "SELECT count(*) FROM analyses WHERE started_at IS NOT NULL AND NOT follows"
        )
    finally:
        await pool.close()
    return CachedLatency(
        submissions=count,
        not_cached=not_cached,
        errors=errors,
        latency_ms={k: v * 1000 for k, v in percentiles(times).items()},
        searches=int(searches),
        concurrency=concurrency,
        concurrent_seconds=float(counts["seconds"]),
        concurrent_answers=int(counts["cached"]),
        concurrent_not_cached=int(counts["other"]),
    )


async def concurrent_load(endpoint: str, seconds: float, concurrency: int) -> dict[str, float]:
    """Cached submissions from a separate process (`generate`): its counts."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.cache",
        endpoint,
        str(seconds),
        str(concurrency),
        stdout=subprocess.PIPE,
    )
    output, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    counts: dict[str, float] = json.loads(output)
    return counts


async def generate(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    """Submit the cached request from `concurrency` connections for `seconds`; counts of
    cached answers and of the others (errors included)."""
    cached = other = 0
    deadline = time.perf_counter() + seconds

    async def submitter() -> None:
        nonlocal cached, other
        connection = Connection(url)
        request = connection.request(FEN)
        try:
            while time.perf_counter() < deadline:
                status, body = await connection.send(request)
                if cached_answer(status, body):
                    cached += 1
                else:
                    other += 1
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    return {"seconds": time.perf_counter() - started, "cached": cached, "other": other}


def positions(count: int, seed: int = SEED) -> list[str]:
    """`count` distinct positions with legal moves, each a few random moves (4 to 12
    plies) from the start; the same ones for the same seed."""
    rng = random.Random(seed)
    found: dict[str, str] = {}
    while len(found) < count:
        board = chess.Board()
        for _ in range(rng.randint(4, 12)):
            board.push(rng.choice(list(board.legal_moves)))
            if board.is_game_over():
                break
        if any(board.legal_moves):
            found.setdefault(board.epd(), board.fen())
    return list(found.values())


def requests(fens: list[str], submissions: int, *, bursts: bool) -> Iterator[str]:
    """`submissions` positions, each of `fens` about as often: in a random order, or in
    `bursts`, each position's requests one after the other (so that they go out together,
    as when many clients follow one game)."""
    order = [fens[number % len(fens)] for number in range(submissions)]
    if bursts:
        order.sort(key=fens.index)
    else:
        random.Random(SEED).shuffle(order)
    return iter(order)


async def load(
    url: str,
    log_dir: Path,
    *,
    submissions: int,
    distinct: int,
    concurrency: int,
    slots: int,
    fresh: bool,
    bursts: bool = False,
) -> Load:
    """`submissions` requests over `distinct` positions from `concurrency` connections,
    with one worker of `slots` slots; counted once every row has ended."""
    pending = requests(positions(distinct), submissions, bursts=bursts)
    errors: dict[str, int] = {}

    async def submitter(endpoint: str) -> None:
        connection = Connection(endpoint)
        try:
            for fen in pending:  # one iterator shared: each request goes out once
                error = error_of(*await connection.send(connection.request(fen, fresh=fresh)))
                if error is not None:
                    errors[error] = errors.get(error, 0) + 1
        finally:
            connection.close()

    pool = await create_pool(DatabaseSettings(pool_size=2), url, application_name="bench-cache")
    try:
        async with services.running(url, log_dir, workers=1, slots=slots) as (port, _):
            endpoint = f"http://127.0.0.1:{port}/graphql"
            started = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(*(submitter(endpoint) for _ in range(concurrency))),
                TIMEOUT_SECONDS,
            )
            submit_seconds = time.perf_counter() - started
            await wait_finished(pool, submissions - sum(errors.values()))
        await wait_disconnected(pool)
        found = await pool.fetchrow(COUNTS)
    finally:
        await pool.close()
    return Load(
        submissions=submissions,
        positions=distinct,
        concurrency=concurrency,
        fresh=fresh,
        bursts=bursts,
        errors=sum(errors.values()),
        error_messages=errors,
        deadlocks=found["deadlocks"],
        searches=found["searches"],
        claims=found["claims"],
        cached=found["cached"],
        joined=found["joined"],
        not_done=found["not_done"],
        positions_searched_again=found["again"],
        positions_answered_differently=found["differently"],
        submit_seconds=submit_seconds,
        wall_seconds=float(found["wall"] or 0.0),
    )


COUNTS = """
    SELECT count(*) FILTER (WHERE started_at IS NOT NULL AND NOT follows) AS searches,
           coalesce(sum(attempts) FILTER (WHERE NOT follows), 0)::bigint AS claims,
           count(*) FILTER (WHERE cached) AS cached,
           count(*) FILTER (WHERE follows) AS joined,
           count(*) FILTER (WHERE status <> 'done') AS not_done,
           extract(epoch FROM max(finished_at) - min(created_at))::float8 AS wall,
           (SELECT count(*) FROM (
                -- positions whose rows carried more than one search
                SELECT position_key FROM analyses
                 WHERE started_at IS NOT NULL AND NOT follows
                 GROUP BY position_key HAVING count(*) > 1) AS twice) AS again,
           (SELECT count(*) FROM (
                -- positions whose rows were answered with different lines
                SELECT position_key FROM analyses
                 GROUP BY position_key HAVING count(DISTINCT result) > 1) AS apart)
               AS differently,
           (SELECT deadlocks FROM pg_stat_database
             WHERE datname = current_database()) AS deadlocks
      FROM analyses
    """


if __name__ == "__main__":
    target, duration, clients = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    sys.stdout.write(json.dumps(asyncio.run(generate(target, duration, clients))) + "\n")
