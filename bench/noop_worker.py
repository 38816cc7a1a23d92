"""`python -m bench.noop_worker URL SLOTS MOST_AHEAD_PER_SLOT`: one worker process of the
queue and scaling benchmarks (see `bench.drainers`). Its slots drain the queue through
the worker's own claim and write path (`engine.batching.Exchange`, as `engine.slot`
drives it), with a no-op in place of the engine: each result is written behind, the slot
goes on. MOST_AHEAD_PER_SLOT 0 claims only for slots that ask (as for analyses of a
second: one row per slot per statement).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import asyncpg

from bench.drainers import say, wait_for_go
from db import claims
from db.models import ResultLine
from db.session import create_pool
from db.settings import DatabaseSettings
from engine import batching
from engine.settings import EngineSettings

FEN = "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1"
"""The position of every no-op job (never searched)."""


async def store_jobs(connection: asyncpg.Connection, jobs: int) -> float:
    """Seconds to queue `jobs` no-op analyses in one statement, as a bulk import would."""
    started = time.perf_counter()
    await connection.execute(
        "INSERT INTO analyses (fen, num_moves_to_return, time_limit)"
        " SELECT $1, 1, 0.1 FROM generate_series(1, $2::integer)",
        FEN,
        jobs,
    )
    return time.perf_counter() - started


async def assert_all_done(connection: asyncpg.Connection, jobs: int) -> None:
    done = await connection.fetchval("SELECT count(*) FROM analyses WHERE status = 'done'")
    assert done == jobs, f"every job written DONE: {done} of {jobs}"


NO_OP_RESULT = [ResultLine(rank=1, centipawn_score=0, mate_score=None, pv=(), pv_san=(), depth=0)]


async def main(url: str, slots: int, most_ahead_per_slot: int) -> int:
    settings = DatabaseSettings(pool_size=slots, max_overflow=0)
    pool = await create_pool(
        settings, url, application_name="bench-noop-worker", min_size=1, generic_plans=True
    )
    worker_id = f"bench-{socket.gethostname()}-{os.getpid()}"
    exchange = batching.Exchange(
        pool,
        worker_id,
        lease_seconds=30,
        backoff=claims.NO_BACKOFF,
        ahead=slots if most_ahead_per_slot else 0,
        ahead_below=EngineSettings().claim_ahead_below,
        most_ahead_per_slot=most_ahead_per_slot,
    )

    async def slot() -> int:
        done = 0
        while (job := await exchange.next_job()) is not None:
            outcome = claims.Outcome.of(
                job, worker_id, claims.Ending.DONE, result=NO_OP_RESULT, engine_name="no-op"
            )
            exchange.end_behind(outcome, lambda _status: None)
            done += 1
        return done

    try:
        say("ready")
        await wait_for_go()
        counts = await asyncio.gather(*(slot() for _ in range(slots)))
        await exchange.drain(600)
        say(str(sum(counts)))
        return 0
    finally:
        await exchange.close()
        await pool.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
