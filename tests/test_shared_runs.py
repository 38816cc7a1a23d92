"""Shared runs: requests for the same position and limits while a search of it is queued
or running join that search: their own rows and ids, one engine run."""

from __future__ import annotations

import asyncio

import asyncpg
import chess
from sqlalchemy.ext.asyncio import AsyncEngine

from db import cancellation, claims, submissions
from db.models import Analysis, AnalysisStatus, ResultLine
from tests.conftest import WorkerFactory
from tests.processes import Completions
from tests.rows import enqueue, store, wait_terminal
from tests.test_position_cache import ITALIAN, keyed

LINE = ResultLine(1, 30, None, pv=("e1g1",), pv_san=("O-O",), depth=10)
SEARCHED = claims.Searched(depth=10, nodes=5000, seconds=0.2)


async def done(pool: asyncpg.Pool, job: claims.ClaimedJob) -> AnalysisStatus | None:
    outcome = claims.Outcome.of(
        job, "w", claims.Ending.DONE, result=[LINE], engine_name="Stockfish", searched=SEARCHED
    )
    return await claims.end(pool, outcome)


async def read(database: AsyncEngine, row: Analysis) -> Analysis:
    current = await submissions.get(database, row.id)
    assert current is not None
    return current


async def test_a_request_joins_the_queued_run_of_the_same_search(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    first = await store(database, keyed())
    second = await store(database, keyed())
    assert second.id != first.id
    assert second.follows and second.run_id == first.id and second.status is AnalysisStatus.QUEUED
    other_limits = await store(database, keyed(depth=11))
    assert not other_limits.follows, "other limits: a run of its own"

    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None and job.id == first.id
    assert (await read(database, second)).status is AnalysisStatus.RUNNING
    late = await store(database, keyed())
    assert late.follows and late.status is AnalysisStatus.RUNNING, "joins a running run too"
    other = await claims.claim_next(pool, "w", 30.0)
    assert other is not None and other.id == other_limits.id, "followers are never claimed"
    assert await claims.claim_next(pool, "w", 30.0) is None

    assert await done(pool, job) is AnalysisStatus.DONE
    for row in (first, second, late):
        finished = await read(database, row)
        assert finished.status is AnalysisStatus.DONE
        assert finished.result_lines() == [LINE] and finished.engine == "Stockfish"
        assert finished.started_at is not None and finished.finished_at is not None
    assert (await store(database, keyed())).cached, "and the cache has it now"


async def test_a_run_given_back_takes_its_followers_back_to_the_queue(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    await store(database, keyed())
    follower = await store(database, keyed())
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    retry = claims.Outcome.of(job, "w", claims.Ending.RETRY, error="engine died")
    assert await claims.end(pool, retry) is AnalysisStatus.QUEUED
    assert (await read(database, follower)).status is AnalysisStatus.QUEUED
    again = await claims.claim_next(pool, "w", 30.0)
    assert again is not None and again.id == job.id and again.attempts == 2


async def test_every_follower_is_told_of_the_end(
    database: AsyncEngine, pool: asyncpg.Pool, completions: Completions
) -> None:
    rows = [await store(database, keyed()) for _ in range(5)]
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    await done(pool, job)
    async with asyncio.timeout(10):
        while not all(completions.counts[row.id] for row in rows):
            await asyncio.sleep(0.01)
    await completions.listener.close()  # deliver what is pending, then stop counting
    assert [completions.counts[row.id] for row in rows] == [1] * 5


async def test_requests_arriving_together_share_one_run(
    pool: asyncpg.Pool,
) -> None:
    stored = await asyncio.gather(*(enqueue(pool, keyed()) for _ in range(30)))
    rows = [row for row in stored if isinstance(row, Analysis)]
    assert len(rows) == 30
    carriers = [row for row in rows if not row.follows]
    assert len(carriers) == 1, [row.follows for row in rows]
    assert {row.run_id for row in rows if row.follows} == {carriers[0].id}


async def test_canceling_a_follower_leaves_the_run_going(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    carrier = await store(database, keyed())
    follower = await store(database, keyed())
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    canceled = await cancellation.request_cancel(database, follower.id)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
    assert (await read(database, carrier)).cancel_requested_at is None
    assert await done(pool, job) is AnalysisStatus.DONE
    assert (await read(database, follower)).status is AnalysisStatus.CANCELED


async def test_canceling_the_queued_carrier_hands_the_run_over(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    carrier = await store(database, keyed())
    follower = await store(database, keyed())
    last = await store(database, keyed())
    canceled = await cancellation.request_cancel(database, carrier.id)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None and job.id == carrier.id, "the run keeps its id"
    assert await done(pool, job) is AnalysisStatus.DONE
    assert (await read(database, follower)).status is AnalysisStatus.DONE
    assert (await read(database, last)).status is AnalysisStatus.DONE
    assert (await read(database, carrier)).status is AnalysisStatus.CANCELED


async def test_canceling_the_running_carrier_hands_its_claim_over(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    carrier = await store(database, keyed())
    follower = await store(database, keyed())
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    canceled = await cancellation.request_cancel(database, carrier.id)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
    carried = await read(database, follower)
    assert carried.status is AnalysisStatus.RUNNING and carried.cancel_requested_at is None
    assert carried.worker_id == "w" and carried.attempts == 1
    leases = await claims.renew_leases(pool, "w", [job.id], 30.0)
    assert [(lease.id, lease.cancel_requested) for lease in leases] == [(job.id, False)]
    assert await done(pool, job) is AnalysisStatus.DONE, "the worker's claim still holds"
    assert (await read(database, follower)).result_lines() == [LINE]
    assert (await read(database, carrier)).status is AnalysisStatus.CANCELED


async def test_the_last_cancellation_stops_the_run(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    carrier = await store(database, keyed())
    follower = await store(database, keyed())
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    await cancellation.request_cancel(database, follower.id)
    asked = await cancellation.request_cancel(database, carrier.id)
    assert asked is not None and asked.status is AnalysisStatus.RUNNING
    assert asked.cancel_requested_at is not None, "its worker is asked to stop"
    leases = await claims.renew_leases(pool, "w", [job.id], 30.0)
    assert [lease.cancel_requested for lease in leases] == [True]
    newcomer = await store(database, keyed())
    assert not newcomer.follows, "a run being canceled is not joined"


async def test_a_fresh_request_has_a_run_of_its_own(database: AsyncEngine) -> None:
    await store(database, keyed())
    fresh = await store(database, keyed(fresh=True))
    assert not fresh.follows and fresh.share_key is None


async def test_a_worker_runs_a_shared_search_once(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    worker = await start_worker(slots=2)
    rows = [await store(database, keyed(ITALIAN, depth=12)) for _ in range(4)]
    finished = [await wait_terminal(database, row, timeout=60) for row in rows]
    assert {row.status for row in finished} == {AnalysisStatus.DONE}
    assert len({str(row.result) for row in finished}) == 1
    assert worker.metrics.registry.get_sample_value("worker_jobs_claimed_total") == 1


async def test_the_share_key_holds_every_limit() -> None:
    base = keyed(chess.STARTING_FEN)
    keys = {
        base.share_key,
        keyed(chess.STARTING_FEN, moves=2).share_key,
        keyed(chess.STARTING_FEN, time_limit=29.0).share_key,
        keyed(chess.STARTING_FEN, depth=11).share_key,
        keyed(chess.STARTING_FEN, nodes=10).share_key,
    }
    assert len(keys) == 5
