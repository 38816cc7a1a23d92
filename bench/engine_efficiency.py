"""Engine efficiency: the same positions at the same time limit through the service and
through a bare python-chess loop with as many Stockfish processes as the worker's slots.

The bare loop runs twice: as one writes it first (one game, the hash kept from position
to position), and with a new game per position, as the service analyses (Stockfish's
`ucinewgame` clears its hash, so an answer does not depend on what the engine saw
before: the same request gets the same answer).

The service runs twice too: as usual, and with every analysis watched (marked as an API
process marks a run it has listeners for), so that its worker publishes the progress of
every search (`engine.progress`)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import chess
import chess.engine
import httpx

from bench import services
from db import progress
from db.settings import asyncpg_dsn
from engine.settings import find_stockfish

SUBMIT = """mutation($fen: String!, $t: Float!) {
  submitAnalysis(input: {fen: $fen, timeLimit: $t}) { id status } }"""
ENDGAMES_AND_MATES = [
    "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1",
    "6k1/5ppp/8/8/8/8/5PPP/3R2K1 w - - 0 1",
    "8/8/8/4k3/8/8/4P3/4K3 w - - 0 1",
    "8/5k2/8/8/8/8/1R6/4K3 w - - 0 1",
    "r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4",
]
TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Efficiency:
    positions: int
    time_limit: float
    engines: int
    service_rate: float
    bare_rate: float
    bare_new_game_rate: float
    watched_service_rate: float
    """The service with every analysis watched: its progress published."""

    @property
    def ratio(self) -> float:
        return self.service_rate / self.bare_rate

    @property
    def ratio_new_game(self) -> float:
        """Against the bare loop doing the same work (a new game per position)."""
        return self.service_rate / self.bare_new_game_rate

    @property
    def ratio_watched(self) -> float:
        """Every analysis watched, against the bare loop as one writes it first."""
        return self.watched_service_rate / self.bare_rate

    @property
    def ratio_watched_new_game(self) -> float:
        """Every analysis watched, against the bare loop with a new game per position."""
        return self.watched_service_rate / self.bare_new_game_rate


def positions(count: int, seed: int = 20261127) -> list[str]:
    """Varied positions: random games cut at 10 to 60 plies, plus endgames and mates."""
    rng = random.Random(seed)
    found = list(ENDGAMES_AND_MATES)
    while len(found) < count:
        board = chess.Board()
        for _ in range(rng.randint(10, 60)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if any(board.legal_moves) and board.status() == chess.STATUS_VALID:
            found.append(board.fen())
    return found[:count]


async def bare(fens: list[str], time_limit: float, engines: int, *, new_game: bool) -> float:
    """Analyses per second of `engines` Stockfish processes fed straight from a list;
    with `new_game`, each position is a game of its own."""
    path = find_stockfish(None)
    assert path is not None, "no Stockfish"
    pending = list(fens)

    async def loop() -> None:
        _, protocol = await chess.engine.popen_uci(str(path))
        await protocol.configure({"Threads": 1, "Hash": 16})
        try:
            while pending:
                await protocol.analyse(
                    chess.Board(pending.pop()),
                    chess.engine.Limit(time=time_limit),
                    game=uuid.uuid4() if new_game else None,
                )
        finally:
            await protocol.quit()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(loop() for _ in range(engines))), TIMEOUT_SECONDS)
    return len(fens) / (time.perf_counter() - started)


async def service(
    url: str,
    log_dir: Path,
    fens: list[str],
    time_limit: float,
    engines: int,
    *,
    watched: bool = False,
) -> float:
    """Analyses per second through submitAnalysis and a worker with `engines` slots; the
    end is heard on LISTEN analysis_done, so waiting costs the engines no CPU. With
    `watched`, each analysis is watched as soon as it is submitted."""
    async with services.running(url, log_dir, workers=1, slots=engines) as (port, _):
        endpoint = f"http://127.0.0.1:{port}/graphql"
        finished = 0
        all_done = asyncio.Event()

        def count(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            nonlocal finished
            finished += len(payload.split(","))  # the ids one statement ended
            if finished == len(fens):
                all_done.set()

        listener = await asyncpg.connect(asyncpg_dsn(url))
        await listener.add_listener("analysis_done", count)
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                started = time.perf_counter()
                for fen in fens:
                    response = await http.post(
                        endpoint, json={"query": SUBMIT, "variables": {"fen": fen, "t": time_limit}}
                    )
                    if watched:
                        run = uuid.UUID(response.json()["data"]["submitAnalysis"]["id"])
                        await progress.watch(listener, [run], TIMEOUT_SECONDS)
                await asyncio.wait_for(all_done.wait(), TIMEOUT_SECONDS)
                return len(fens) / (time.perf_counter() - started)
        finally:
            await listener.close()


async def run(url: str, log_dir: Path, count: int, time_limit: float, engines: int) -> Efficiency:
    fens = positions(count)
    bare_rate = await bare(fens, time_limit, engines, new_game=False)
    bare_new_game_rate = await bare(fens, time_limit, engines, new_game=True)
    service_rate = await service(url, log_dir, fens, time_limit, engines)
    await forget_cached(url)
    watched_rate = await service(url, log_dir, fens, time_limit, engines, watched=True)
    return Efficiency(
        count, time_limit, engines, service_rate, bare_rate, bare_new_game_rate, watched_rate
    )


async def forget_cached(url: str) -> None:
    """Empty the position cache, which would otherwise answer a second run of the same
    positions without an engine."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute("TRUNCATE position_cache")
    finally:
        await connection.close()
