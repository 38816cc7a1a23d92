"""Results and claims in one statement, and rows claimed ahead while analyses run short."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import chess
from sqlalchemy.ext.asyncio import AsyncEngine

from db import cancellation, claims, submissions
from db.claims import Ending
from db.models import Analysis, AnalysisStatus, ResultLine
from engine.batching import Exchange
from engine.settings import EngineSettings
from engine.worker import Worker
from tests.rows import request, store, wait_terminal

LINE = ResultLine(
    rank=1, centipawn_score=12, mate_score=None, pv=("e2e4",), pv_san=("e4",), depth=9
)
LEASE = 30.0


def test_a_stored_line_carries_every_field() -> None:
    stored = LINE.to_json()
    assert set(stored) == {field.name for field in dataclasses.fields(ResultLine)}
    assert ResultLine.from_json(stored) == LINE


def done(job: claims.ClaimedJob) -> claims.Outcome:
    """A result for `job`, claimed by worker "w"."""
    return claims.Outcome.of(job, "w", Ending.DONE, result=[LINE], engine_name="x")


async def status_of(database: AsyncEngine, analysis_id: uuid.UUID) -> tuple[AnalysisStatus, int]:
    row = await submissions.get(database, analysis_id)
    assert row is not None
    return row.status, row.attempts


async def test_results_and_claims_share_one_statement(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    rows = [await store(database, request()) for _ in range(3)]
    [first] = (await claims.exchange(pool, "w", LEASE, claim=1)).claimed
    assert first.id == rows[0].id
    stale = dataclasses.replace(first, attempts=first.attempts + 1)
    exchanged = await claims.exchange(
        pool,
        "w",
        LEASE,
        claim=5,
        outcomes=[
            claims.Outcome.of(job, "w", Ending.DONE, result=[LINE], engine_name="x")
            for job in (first, stale)
        ],
    )
    # The stale token matches nothing; the claims go on regardless.
    assert exchanged.ended == {first.id: AnalysisStatus.DONE}
    assert [job.id for job in exchanged.claimed] == [rows[1].id, rows[2].id]
    done = await submissions.get(database, first.id)
    assert done is not None and done.status is AnalysisStatus.DONE
    assert done.result_lines() == [LINE]


async def test_rows_are_claimed_ahead_only_while_analyses_run_short(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    rows = [await store(database, request()) for _ in range(6)]
    exchange = Exchange(
        pool, "w", LEASE, claims.NO_BACKOFF, ahead=2, ahead_below=60.0, most_ahead_per_slot=1
    )
    first = await exchange.next_job()
    assert first is not None
    assert exchange.claimed_ahead == set(), "nothing is known of analysis times yet"
    assert await exchange.end(done(first)) is AnalysisStatus.DONE

    # The analysis was short: the statement that records it claims two rows ahead.
    await exchange.settled()
    assert exchange.claimed_ahead == {rows[1].id, rows[2].id}
    second = await exchange.next_job()  # from the hand, which is topped up again
    assert second is not None and second.id == rows[1].id
    await exchange.settled()
    assert exchange.claimed_ahead == {rows[2].id, rows[3].id}
    for row in rows[1:4]:
        assert await status_of(database, row.id) == (AnalysisStatus.RUNNING, 1)

    third = await exchange.next_job()  # served from the hand, in claim order
    assert third is not None and third.id == rows[2].id

    held = exchange.claimed_ahead
    await exchange.give_back_ahead()
    assert exchange.claimed_ahead == set()
    for analysis_id in held:
        # Back in the queue, the claim not counted against the row.
        assert await status_of(database, analysis_id) == (AnalysisStatus.QUEUED, 0)
    taken = exchange.take_back(rows[4].id)
    assert taken is None, "a row never claimed is not in the hand"


async def test_the_shorter_the_analyses_the_more_rows_ahead_up_to_a_bound(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    for _ in range(20):
        await store(database, request())
    exchange = Exchange(
        pool, "w", LEASE, claims.NO_BACKOFF, ahead=2, ahead_below=60.0, most_ahead_per_slot=4
    )
    for _ in range(3):
        job = await exchange.next_job()
        assert job is not None
        assert (
            await exchange.end(done(job)) is AnalysisStatus.DONE
        )  # at once: far under a round trip
        await exchange.settled()
        assert 2 <= len(exchange.claimed_ahead) <= 2 * 4


async def test_no_row_is_claimed_ahead_when_analyses_run_long(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    for _ in range(4):
        await store(database, request())
    exchange = Exchange(pool, "w", LEASE, claims.NO_BACKOFF, ahead=2, ahead_below=0.0)
    for _ in range(3):
        job = await exchange.next_job()
        assert job is not None
        assert await exchange.end(done(job)) is AnalysisStatus.DONE
        assert exchange.claimed_ahead == set()


@dataclasses.dataclass(frozen=True)
class Holding:
    """A one-slot worker running a long analysis with one row claimed ahead."""

    worker: Worker
    long: Analysis
    ahead: Analysis


@contextlib.asynccontextmanager
async def holding_a_row_ahead(
    database: AsyncEngine, pool: asyncpg.Pool, database_url: str, stockfish: Path
) -> AsyncIterator[Holding]:
    """The quick analysis first (so analyses look short), then the long one, with the
    last row claimed ahead; the worker is stopped on exit."""
    quick = await store(database, request(depth=1))
    long = await store(database, request(chess.STARTING_FEN, time_limit=30.0))
    ahead = await store(database, request(depth=1))
    settings = EngineSettings(
        slots=1, poll_interval=300.0, grace_seconds=0.2, claim_ahead_below=5.0
    )
    worker = Worker(settings, database, pool, database_url, stockfish)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        assert (await wait_terminal(database, quick)).status is AnalysisStatus.DONE
        async with asyncio.timeout(10):
            while worker.exchange.claimed_ahead != {ahead.id}:
                await asyncio.sleep(0.01)
        assert worker.slots[0].job is not None and worker.slots[0].job.id == long.id
        yield Holding(worker, long, ahead)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_a_worker_cancels_a_row_it_claimed_ahead(
    database: AsyncEngine, pool: asyncpg.Pool, database_url: str, stockfish: Path
) -> None:
    async with holding_a_row_ahead(database, pool, database_url, stockfish) as held:
        await cancellation.request_cancel(database, held.ahead.id)  # NOTIFY reaches the worker
        canceled = await wait_terminal(database, held.ahead, timeout=5)
        assert canceled.status is AnalysisStatus.CANCELED
        assert held.worker.exchange.claimed_ahead == set()
    # On shutdown the running row went back, its claim not counted.
    assert await status_of(database, held.long.id) == (AnalysisStatus.QUEUED, 0)


async def test_a_stopping_worker_puts_rows_claimed_ahead_back(
    database: AsyncEngine, pool: asyncpg.Pool, database_url: str, stockfish: Path
) -> None:
    async with holding_a_row_ahead(database, pool, database_url, stockfish) as held:
        pass
    for row in (held.long, held.ahead):
        assert await status_of(database, row.id) == (AnalysisStatus.QUEUED, 0)
