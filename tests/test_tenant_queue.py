"""Tenants in the queue, on a real PostgreSQL: quotas checked and charged at submission,
engine seconds settled by what was used, fair turns among tenants, and who sees what."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from db import cancellation, claims, insight, submissions, tenants
from db.models import Analysis, AnalysisKind, AnalysisStatus
from db.submissions import Refusal
from db.tenants import Quotas, Tenant
from tests.rows import ANONYMOUS, enqueue, request, store

LEASE = 15.0
INTERACTIVE, BATCH = AnalysisKind.INTERACTIVE, AnalysisKind.BATCH


async def tenant(pool: asyncpg.Pool, name: str, **quotas: Any) -> Tenant:
    """A new key named `name` with these quotas."""
    created, _secret = await tenants.create(pool, name, quotas=Quotas(**quotas))
    return created


async def budget(pool: asyncpg.Pool, who: Tenant) -> float | None:
    """The tenant's bucket as stored (NULL: full, never charged)."""
    value: float | None = await pool.fetchval(
        "SELECT budget_seconds FROM api_keys WHERE id = $1", who.id
    )
    return value


async def count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM analyses"))


async def claim_all(pool: asyncpg.Pool, limit: int | None = None) -> list[uuid.UUID]:
    """Claim one row at a time, as slots that free one by one would; the tenants' ids."""
    order: list[uuid.UUID] = []
    while limit is None or len(order) < limit:
        job = await claims.claim_next(pool, "w", LEASE)
        if job is None:
            break
        order.append(await pool.fetchval("SELECT tenant_id FROM analyses WHERE id = $1", job.id))
    return order


# Quotas


async def test_queued_work_past_the_quota_is_refused_until_a_worker_takes_some(
    pool: asyncpg.Pool,
) -> None:
    a = await tenant(pool, "a", max_queued=3)
    for _ in range(3):
        assert isinstance(await enqueue(pool, request(time_limit=4), tenant=a), Analysis)
    refusal = await enqueue(pool, request(time_limit=2), tenant=a)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "quota_exceeded"
    # about when a slot frees a place: the time limit of the row a worker takes next
    assert refusal.retry_after == 4
    assert refusal.detail == "3 analyses queued, the quota is 3"
    assert await count(pool) == 3
    # another tenant is not held by a's quota
    assert isinstance(await enqueue(pool, tenant=await tenant(pool, "b")), Analysis)
    # running rows do not count
    assert await claims.claim_next(pool, "w", LEASE) is not None
    assert isinstance(await enqueue(pool, tenant=a), Analysis)


async def test_the_queued_quota_holds_under_concurrent_submissions(pool: asyncpg.Pool) -> None:
    a = await tenant(pool, "a", max_queued=5)
    results = await asyncio.gather(*(enqueue(pool, tenant=a) for _ in range(20)))
    assert sum(isinstance(result, Analysis) for result in results) == 5
    assert {result.reason for result in results if isinstance(result, Refusal)} == {
        "quota_exceeded"
    }
    assert await count(pool) == 5


async def test_engine_seconds_hold_under_concurrent_submissions(pool: asyncpg.Pool) -> None:
    a = await tenant(pool, "a", engine_seconds_per_hour=36)
    results = await asyncio.gather(
        *(enqueue(pool, request(time_limit=5), tenant=a) for _ in range(20))
    )
    assert sum(isinstance(result, Analysis) for result in results) == 7
    assert await budget(pool, a) == pytest.approx(1, abs=0.01)


async def test_engine_seconds_past_the_quota_are_refused_with_the_exact_wait(
    pool: asyncpg.Pool,
) -> None:
    a = await tenant(pool, "a", engine_seconds_per_hour=36)  # 0.01 s a second
    assert isinstance(await enqueue(pool, request(time_limit=30), tenant=a), Analysis)
    assert await budget(pool, a) == pytest.approx(6)
    refusal = await enqueue(pool, request(time_limit=10), tenant=a)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "rate_limited"
    # 4 s are missing, refilled at 0.01 s a second: 400 s, less what refilled meanwhile
    assert 399 < refusal.retry_after <= 400
    assert await count(pool) == 1
    assert await budget(pool, a) == pytest.approx(6, abs=0.01), "a refusal charges nothing"
    usage = await tenants.usage(pool, a)
    assert usage.engine_seconds_available == pytest.approx(6, abs=0.01)
    assert (usage.queued, usage.running) == (1, 0)


async def test_a_time_limit_above_the_hourly_quota_is_refused_for_what_it_is(
    pool: asyncpg.Pool,
) -> None:
    a = await tenant(pool, "a", engine_seconds_per_hour=10)
    refusal = await enqueue(pool, request(time_limit=11), tenant=a)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "rate_limited"
    assert "never accepted" in refusal.detail


async def test_a_position_without_moves_is_charged_a_little_and_checked(
    pool: asyncpg.Pool,
) -> None:
    finished = dataclasses.replace(request(time_limit=5), finished_result=())
    a = await tenant(pool, "a", max_queued=1, engine_seconds_per_hour=36)
    assert isinstance(await enqueue(pool, request(time_limit=30), tenant=a), Analysis)
    # the queued-work quota is full, but a result known at once does not queue
    done = await enqueue(pool, finished, tenant=a)
    assert isinstance(done, Analysis) and done.status is AnalysisStatus.DONE
    assert await budget(pool, a) == pytest.approx(6 - tenants.MIN_CHARGE_SECONDS, abs=0.005)
    # the engine seconds still apply
    await pool.execute(
        "UPDATE api_keys SET budget_seconds = 0, budget_at = now() WHERE id = $1", a.id
    )
    refusal = await enqueue(pool, finished, tenant=a)
    assert isinstance(refusal, Refusal) and refusal.reason == "rate_limited"
    assert refusal.retry_after == pytest.approx(1, abs=0.01)


async def test_the_whole_queue_cap_is_refused_as_queue_full(pool: asyncpg.Pool) -> None:
    a = await tenant(pool, "a")
    for _ in range(2):
        assert isinstance(
            await enqueue(pool, request(time_limit=3), tenant=a, max_queued=2), Analysis
        )
    refusal = await enqueue(pool, tenant=await tenant(pool, "b"), max_queued=2)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.retry_after) == ("queue_full", 3)


async def test_a_finished_row_refunds_what_its_last_attempt_did_not_use(
    pool: asyncpg.Pool,
) -> None:
    a = await tenant(pool, "a", engine_seconds_per_hour=36)
    assert isinstance(await enqueue(pool, request(time_limit=30), tenant=a), Analysis)
    job = await claims.claim_next(pool, "w", LEASE)
    assert job is not None
    await pool.execute(
        "UPDATE analyses SET started_at = now() - interval '2 seconds' WHERE id = $1", job.id
    )
    assert await claims.finish(pool, job, "w", [], "x")
    # charged 30, used 2: 28 back on top of the 6 left
    assert await budget(pool, a) == pytest.approx(34, abs=0.2)
    usage = await tenants.usage(pool, a)
    assert usage.engine_seconds_available == pytest.approx(34, abs=0.2)
    assert usage.engine_seconds_last_hour == pytest.approx(2, abs=0.2)


async def test_refunds_never_fill_the_bucket_past_its_capacity(pool: asyncpg.Pool) -> None:
    a = await tenant(pool, "a", engine_seconds_per_hour=36)
    assert isinstance(await enqueue(pool, request(time_limit=30), tenant=a), Analysis)
    await pool.execute("UPDATE api_keys SET budget_seconds = 20 WHERE id = $1", a.id)
    job = await claims.claim_next(pool, "w", LEASE)
    assert job is not None
    failed = claims.Outcome.of(job, "w", claims.Ending.FAILED, error="no")
    assert await claims.end(pool, failed) is AnalysisStatus.FAILED
    assert await budget(pool, a) == 36


async def test_a_row_given_back_is_settled_only_once_it_ends(pool: asyncpg.Pool) -> None:
    a = await tenant(pool, "a", engine_seconds_per_hour=100)
    assert isinstance(await enqueue(pool, request(time_limit=30), tenant=a), Analysis)
    job = await claims.claim_next(pool, "w", LEASE)
    assert job is not None
    retry = claims.Outcome.of(job, "w", claims.Ending.RETRY, error="engine died")
    assert await claims.end(pool, retry) is AnalysisStatus.QUEUED
    assert await budget(pool, a) == pytest.approx(70)


async def test_canceling_a_queued_row_refunds_all_it_was_charged(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    a = await tenant(pool, "a", engine_seconds_per_hour=100)
    row = await enqueue(pool, request(time_limit=30), tenant=a)
    assert isinstance(row, Analysis)
    assert await budget(pool, a) == pytest.approx(70)
    canceled = await cancellation.request_cancel(database, row.id, viewer=a)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
    assert await budget(pool, a) == pytest.approx(100)
    # asking again changes nothing
    await cancellation.request_cancel(database, row.id, viewer=a)
    assert await budget(pool, a) == pytest.approx(100)


async def test_the_anonymous_tenant_follows_the_quotas_it_is_given(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    anonymous = dataclasses.replace(
        ANONYMOUS, quotas=Quotas(max_queued=2, engine_seconds_per_hour=50)
    )
    row = await enqueue(pool, request(time_limit=30), tenant=anonymous)
    assert isinstance(row, Analysis) and row.tenant_id == tenants.ANONYMOUS_ID
    refusal = await enqueue(pool, request(time_limit=30), tenant=anonymous)
    assert isinstance(refusal, Refusal) and refusal.reason == "rate_limited"
    assert (
        await pool.fetchval(
            "SELECT engine_seconds_per_hour FROM api_keys WHERE id = $1", tenants.ANONYMOUS_ID
        )
        == 50
    )
    await cancellation.request_cancel(database, row.id)
    assert await budget(pool, anonymous) == pytest.approx(50)


async def test_usage_counts_queued_and_running_work(pool: asyncpg.Pool) -> None:
    a = await tenant(pool, "a")
    for _ in range(3):
        await enqueue(pool, tenant=a)
    await enqueue(pool, tenant=await tenant(pool, "b"))
    await claims.claim_next(pool, "w", LEASE)
    usage = await tenants.usage(pool, a)
    assert (usage.queued, usage.running) == (2, 1)
    assert usage.engine_seconds_available is None
    assert usage.engine_seconds_last_hour == 0


# Fair turns


async def test_a_newcomer_is_served_next_to_a_tenant_with_a_backlog(pool: asyncpg.Pool) -> None:
    a, b = await tenant(pool, "a"), await tenant(pool, "b")
    for _ in range(50):
        await enqueue(pool, request(time_limit=1), tenant=a)
    for _ in range(5):
        await enqueue(pool, request(time_limit=1), tenant=b)
    order = await claim_all(pool)
    assert len(order) == 55
    served_b = [place for place, who in enumerate(order) if who == b.id]
    assert served_b[0] < 2, order
    assert served_b[-1] < 10, order


async def test_a_tenant_of_weight_two_gets_twice_the_share(pool: asyncpg.Pool) -> None:
    a, b = await tenant(pool, "a"), await tenant(pool, "b", weight=2)
    for _ in range(30):
        await enqueue(pool, request(time_limit=1), tenant=a)
        await enqueue(pool, request(time_limit=1), tenant=b)
    first = await claim_all(pool, 30)
    assert 18 <= first.count(b.id) <= 22, first


async def test_interactive_work_goes_before_the_tenants_batch_backlog(pool: asyncpg.Pool) -> None:
    a = await tenant(pool, "a")
    for _ in range(20):
        await enqueue(pool, request(time_limit=1), tenant=a, kind=BATCH)
    interactive = await enqueue(pool, request(time_limit=1), tenant=a, kind=INTERACTIVE)
    assert isinstance(interactive, Analysis) and interactive.kind == INTERACTIVE
    first = [await claims.claim_next(pool, "w", LEASE) for _ in range(2)]
    assert interactive.id in {job.id for job in first if job is not None}


async def test_a_longer_analysis_moves_its_tenant_further_on(pool: asyncpg.Pool) -> None:
    a, b = await tenant(pool, "a"), await tenant(pool, "b")
    for _ in range(4):
        await enqueue(pool, request(time_limit=10), tenant=a)
    for _ in range(20):
        await enqueue(pool, request(time_limit=1), tenant=b)
    # one of a's analyses is worth ten of b's: b has ten turns for each of a's
    first = await claim_all(pool, 12)
    assert first.count(a.id) == 1, first


# Who sees what


async def test_rows_are_seen_by_their_tenant_admins_and_anyone_with_an_anonymous_id(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    a, b = await tenant(pool, "a"), await tenant(pool, "b")
    admin, _ = await tenants.create(pool, "admin", admin=True)
    of_a = await store(database, tenant=a)
    of_b = await store(database, tenant=b)
    anonymous = await store(database)
    everything = {of_a.id, of_b.id, anonymous.id}

    async def seen(viewer: Tenant | None) -> set[uuid.UUID]:
        one_by_one = {
            row_id
            for row_id in everything
            if await submissions.get(database, row_id, viewer=viewer) is not None
        }
        together = {
            row.id for row in await submissions.get_many(database, list(everything), viewer=viewer)
        }
        assert one_by_one == together
        return together

    assert await seen(a) == {of_a.id, anonymous.id}
    assert await seen(b) == {of_b.id, anonymous.id}
    assert await seen(ANONYMOUS) == {anonymous.id}
    assert await seen(admin) == everything
    assert await seen(None) == everything


async def test_a_tenant_cannot_cancel_another_tenants_row(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    a, b = await tenant(pool, "a"), await tenant(pool, "b")
    row = await store(database, tenant=a)
    assert await cancellation.request_cancel(database, row.id, viewer=b) is None
    unchanged = await submissions.get(database, row.id)
    assert unchanged is not None and unchanged.status is AnalysisStatus.QUEUED
    anonymous = await store(database)
    canceled = await cancellation.request_cancel(database, anonymous.id, viewer=b)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
    admin, _ = await tenants.create(pool, "admin", admin=True)
    canceled = await cancellation.request_cancel(database, row.id, viewer=admin)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED


async def test_listings_and_statistics_of_one_tenant(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    a, b = await tenant(pool, "a"), await tenant(pool, "b")
    of_a = [await store(database, tenant=a) for _ in range(3)]
    await store(database, tenant=b)
    await store(database)
    listed = await insight.newest(database, 10, tenant_id=a.id)
    assert [row.id for row in listed] == [row.id for row in reversed(of_a)]
    page = await insight.newest(
        database, 10, insight.Position(listed[0].created_at, listed[0].id), tenant_id=a.id
    )
    assert [row.id for row in page] == [row.id for row in listed[1:]]
    assert len(await insight.newest(database, 10)) == 5
    await claims.claim_next(pool, "w", LEASE)  # a's first, the earliest turn
    stats = await insight.queue_stats(database, a.id)
    assert (stats.counts[AnalysisStatus.QUEUED], stats.counts[AnalysisStatus.RUNNING]) == (2, 1)
    assert (stats.workers, stats.running_unowned) == ([], 0)
    everyone = await insight.queue_stats(database)
    assert everyone.counts[AnalysisStatus.QUEUED] == 4
    assert everyone.running_unowned == 1


@pytest.mark.parametrize("status", [None, AnalysisStatus.QUEUED])
async def test_a_tenants_listing_is_served_by_its_index(
    database: AsyncEngine, status: AnalysisStatus | None
) -> None:
    query = insight.newest_query(21, None, status, uuid.uuid4())
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with database.begin() as connection:
        await connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(row[0] for row in await connection.execute(text("EXPLAIN " + sql)))
    assert "ix_analyses_tenant_listing" in plan, plan
    assert "Sort" not in plan, "the index gives the order"


async def test_the_quota_count_uses_the_tenants_index(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        arguments = (
            *("fen", 1, 1.0, None, 3, 100, uuid.uuid4(), 5, 36.0, 1.0, 0, 1.0, None),
            *(None, "key", "key|1|1.0|None|None", 0.01, None, None),
        )
        rows = await connection.fetch("EXPLAIN " + submissions.ENQUEUE, *arguments)
    plan = "\n".join(row[0] for row in rows)
    assert "ix_analyses_tenant_queued" in plan, plan
    # the cache and the run to join are found by their indexes too
    assert "position_cache_pkey" in plan, plan
    assert "ix_analyses_active_run" in plan, plan
