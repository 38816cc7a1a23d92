"""Leases, retries, release and cancellation at the statement level, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import cancellation, claims, notifications, submissions, sweep
from db.claims import Ending
from db.models import Analysis, AnalysisStatus, ResultLine
from db.settings import asyncpg_dsn
from tests.rows import end_claim, enqueue, request, store

LEASE = 15.0
NO_BACKOFF = claims.Backoff(0.0, 0.0)
LINE = ResultLine(
    rank=1, centipawn_score=12, mate_score=None, pv=("e2e4",), pv_san=("e4",), depth=5
)


async def expire_leases(database: AsyncEngine) -> None:
    """Make every running row's lease run out now (as if its worker had died)."""
    async with database.begin() as connection:
        await connection.execute(
            text(
                "UPDATE analyses SET lease_expires_at = now() - interval '1 second'"
                " WHERE status = 'running'"
            )
        )


async def claim(pool: asyncpg.Pool, worker: str) -> claims.ClaimedJob:
    job = await claims.claim_next(pool, worker, LEASE)
    assert job is not None
    return job


async def test_renewal_extends_held_leases_only(database: AsyncEngine, pool: asyncpg.Pool) -> None:
    await store(database)
    job = await claim(pool, "a")
    before = await submissions.get(database, job.id)
    assert before is not None and before.lease_expires_at is not None
    leases = await claims.renew_leases(pool, "a", [job.id, uuid.uuid4()], 60)
    assert leases == [claims.Lease(id=job.id, cancel_requested=False)]
    after = await submissions.get(database, job.id)
    assert after is not None and after.lease_expires_at is not None
    assert after.lease_expires_at > before.lease_expires_at
    assert await claims.renew_leases(pool, "b", [job.id], 60) == []


async def test_expired_rows_go_back_to_the_queue_with_backoff(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    row = await store(database)
    await claim(pool, "a")
    assert await sweep.requeue_expired(pool, NO_BACKOFF) == {}, "lease still valid"
    await expire_leases(database)
    backoff = claims.Backoff(base_seconds=30, cap_seconds=60)
    assert await sweep.requeue_expired(pool, backoff) == {row.id: AnalysisStatus.QUEUED}
    requeued = await submissions.get(database, row.id)
    assert requeued is not None
    assert (requeued.status, requeued.worker_id, requeued.attempts) == (
        AnalysisStatus.QUEUED,
        None,
        1,
    )
    assert requeued.error == "worker lost (lease expired)"
    delay = (requeued.run_after - requeued.updated_at).total_seconds()
    assert 15 <= delay <= 30, "first retry waits base * [0.5, 1)"
    assert await claims.claim_next(pool, "b", LEASE) is None, "not due yet"


async def test_expired_rows_fail_once_attempts_are_used_up(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    row = await store(database, request(max_attempts=2))
    for attempt in (1, 2):
        job = await claim(pool, f"worker-{attempt}")
        assert job.attempts == attempt
        await expire_leases(database)
        await sweep.requeue_expired(pool, NO_BACKOFF)
    failed = await submissions.get(database, row.id)
    assert failed is not None
    assert failed.status is AnalysisStatus.FAILED
    assert failed.error == "worker lost (lease expired) (gave up after 2 attempts)"
    assert failed.finished_at is not None


async def test_a_taken_over_worker_cannot_write_its_late_result(
    database: AsyncEngine, database_url: str, pool: asyncpg.Pool
) -> None:
    done_events: Counter[str] = Counter()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    await listener.add_listener(
        notifications.ANALYSIS_DONE, lambda _c, _p, _ch, payload: done_events.update([payload])
    )
    try:
        row = await store(database)
        slow = await claim(pool, "slow-worker")
        await expire_leases(database)
        await sweep.requeue_expired(pool, NO_BACKOFF)
        fast = await claim(pool, "fast-worker")
        assert (fast.id, fast.attempts) == (slow.id, 2)
        # The slow worker comes back: every write of its old claim is fenced out.
        assert not await claims.finish(pool, slow, "slow-worker", [LINE], "x")
        assert not await end_claim(pool, slow, "slow-worker", Ending.FAILED, "late")
        assert (
            await end_claim(pool, slow, "slow-worker", Ending.RETRY, "late", backoff=NO_BACKOFF)
            is None
        )
        assert not await end_claim(pool, slow, "slow-worker", Ending.RELEASED)
        assert await claims.renew_leases(pool, "slow-worker", [slow.id], 60) == []
        assert await claims.finish(pool, fast, "fast-worker", [LINE], "Stockfish")
        # Even the same worker id with an old attempt number is fenced out.
        assert not await claims.finish(pool, slow, "fast-worker", [LINE], "x")
        # A sweep after completion leaves the finished row alone.
        await expire_leases(database)
        assert await sweep.requeue_expired(pool, NO_BACKOFF) == {}
        finished = await submissions.get(database, row.id)
        assert finished is not None
        assert (finished.status, finished.worker_id) == (AnalysisStatus.DONE, "fast-worker")
        # A round trip on the listening connection delivers what was sent before it.
        await listener.execute("SELECT 1")
        assert done_events == Counter({str(row.id): 1})
    finally:
        await listener.close()


async def test_retry_requeues_then_fails_with_the_reason(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    row = await store(database, request(max_attempts=2))
    job = await claim(pool, "a")
    assert await end_claim(
        pool, job, "a", Ending.RETRY, "engine died", backoff=NO_BACKOFF, engine="SF"
    ) is (AnalysisStatus.QUEUED)
    job = await claim(pool, "a")
    assert await end_claim(
        pool, job, "a", Ending.RETRY, "engine died", backoff=NO_BACKOFF, engine="SF"
    ) is (AnalysisStatus.FAILED)
    failed = await submissions.get(database, row.id)
    assert failed is not None
    assert failed.error == "engine died (gave up after 2 attempts)"
    assert failed.engine == "SF"


async def test_release_returns_the_row_without_spending_an_attempt(
    database: AsyncEngine,
    pool: asyncpg.Pool,
) -> None:
    row = await store(database)
    job = await claim(pool, "a")
    assert await end_claim(pool, job, "a", Ending.RELEASED)
    released = await submissions.get(database, row.id)
    assert released is not None
    assert (released.status, released.attempts, released.worker_id) == (
        AnalysisStatus.QUEUED,
        0,
        None,
    )
    assert (await claim(pool, "b")).attempts == 1


async def test_cancel_queued_running_and_finished(
    database: AsyncEngine, database_url: str, pool: asyncpg.Pool
) -> None:
    received: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    for channel in (notifications.ANALYSIS_CANCEL, notifications.ANALYSIS_DONE):
        await listener.add_listener(
            channel, lambda _c, _p, channel, payload: received.put_nowait((channel, payload))
        )
    try:
        running_row = await store(database)
        queued_row = await store(database)
        job = await claim(pool, "a")
        assert job.id == running_row.id

        canceled = await cancellation.request_cancel(database, queued_row.id)
        assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
        assert await asyncio.wait_for(received.get(), 5) == (
            notifications.ANALYSIS_DONE,
            str(queued_row.id),
        )

        asked = await cancellation.request_cancel(database, running_row.id)
        assert asked is not None and asked.status is AnalysisStatus.RUNNING
        assert asked.cancel_requested_at is not None
        assert await asyncio.wait_for(received.get(), 5) == (
            notifications.ANALYSIS_CANCEL,
            str(running_row.id),
        )
        [lease] = await claims.renew_leases(pool, "a", [job.id], LEASE)
        assert lease.cancel_requested
        assert await end_claim(pool, job, "a", Ending.CANCELED)
        assert await asyncio.wait_for(received.get(), 5) == (
            notifications.ANALYSIS_DONE,
            str(running_row.id),
        )

        unchanged = await cancellation.request_cancel(database, running_row.id)
        assert unchanged is not None and unchanged.status is AnalysisStatus.CANCELED
        assert await cancellation.request_cancel(database, uuid.uuid4()) is None
        await listener.execute("SELECT 1")
        assert received.empty(), "cancelling a finished row notifies nobody"
    finally:
        await listener.close()


async def test_a_lost_worker_with_a_cancel_request_ends_canceled(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    row = await store(database)
    await claim(pool, "a")
    await cancellation.request_cancel(database, row.id)
    await expire_leases(database)
    assert await sweep.requeue_expired(pool, NO_BACKOFF) == {row.id: AnalysisStatus.CANCELED}


async def test_enqueue_refuses_past_the_cap_and_stores_nothing(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    for _ in range(3):
        assert isinstance(await enqueue(pool, max_queued=3), Analysis)
    refusal = await enqueue(pool, max_queued=3)
    assert isinstance(refusal, submissions.Refusal)
    assert refusal.reason == "queue_full"
    async with database.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM analyses"))).scalar_one()
    assert count == 3
    # Running rows do not count against the cap.
    await claim(pool, "a")
    assert isinstance(await enqueue(pool, max_queued=3), Analysis)


async def test_next_due_in_reports_the_earliest_retry(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    assert await claims.next_due_in(pool) is None
    await store(database)
    job = await claim(pool, "a")
    await end_claim(pool, job, "a", Ending.RETRY, "x", backoff=claims.Backoff(20, 20))
    due = await claims.next_due_in(pool)
    assert due is not None and 9 < due <= 20
