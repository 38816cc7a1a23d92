"""The queue's statements on a real PostgreSQL: claim, finish, fencing, notifications."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import claims, notifications, submissions
from db.claims import Ending, Outcome
from db.models import AnalysisStatus, ResultLine
from db.settings import asyncpg_dsn
from tests.conftest import REFERENCE_FEN
from tests.rows import end_claim, request, store

LEASE = 15.0
LINE = ResultLine(
    rank=1, centipawn_score=None, mate_score=-2, pv=("c2c1",), pv_san=("Rc1+",), depth=10
)


async def test_enqueue_stores_a_queued_row(database: AsyncEngine) -> None:
    row = await store(database)
    assert row.status is AnalysisStatus.QUEUED
    assert row.attempts == 0
    assert row.created_at is not None
    stored = await submissions.get(database, row.id)
    assert stored is not None
    assert stored.fen == REFERENCE_FEN


async def test_get_unknown_id_is_none(database: AsyncEngine) -> None:
    assert await submissions.get(database, uuid.uuid4()) is None


async def test_claim_marks_running_and_finish_stores_the_result(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    row = await store(database)
    job = await claims.claim_next(pool, "worker-a", LEASE)
    assert job is not None
    assert (job.id, job.attempts) == (row.id, 1)
    assert await claims.claim_next(pool, "worker-b", LEASE) is None
    running = await submissions.get(database, row.id)
    assert running is not None
    assert running.status is AnalysisStatus.RUNNING
    assert running.worker_id == "worker-a"
    assert running.started_at is not None and running.lease_expires_at is not None

    assert await claims.finish(pool, job, "worker-a", [LINE], "Stockfish 15.1")
    done = await submissions.get(database, row.id)
    assert done is not None
    assert done.status is AnalysisStatus.DONE
    assert done.result_lines() == [LINE]
    assert done.engine == "Stockfish 15.1"
    assert done.finished_at is not None and done.lease_expires_at is None


async def test_finish_is_fenced_by_worker_and_status(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    await store(database)
    job = await claims.claim_next(pool, "worker-a", LEASE)
    assert job is not None
    assert not await claims.finish(pool, job, "worker-b", [LINE], "x")
    assert not await end_claim(pool, job, "worker-b", Ending.FAILED, "boom")
    assert await end_claim(pool, job, "worker-a", Ending.FAILED, "boom")
    assert not await claims.finish(pool, job, "worker-a", [LINE], "x")
    failed = await submissions.get(database, job.id)
    assert failed is not None
    assert (failed.status, failed.error, failed.result) == (AnalysisStatus.FAILED, "boom", None)


async def test_claim_takes_the_earliest_turn(database: AsyncEngine, pool: asyncpg.Pool) -> None:
    first = await store(database)
    second = await store(database)
    urgent = await store(database)
    async with database.begin() as connection:
        await connection.execute(
            text("UPDATE analyses SET turn = 0 WHERE id = :id"), {"id": urgent.id}
        )
    order = []
    for _ in range(3):
        job = await claims.claim_next(pool, "w", LEASE)
        assert job is not None
        order.append(job.id)
    assert order == [urgent.id, first.id, second.id]


async def test_concurrent_claimers_take_each_row_exactly_once(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    total = 500
    async with database.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO analyses (fen, num_moves_to_return, time_limit)"
                " SELECT :fen, 1, 0.1 FROM generate_series(1, :n)"
            ),
            {"fen": REFERENCE_FEN, "n": total},
        )

    async def claimer(name: str) -> list[uuid.UUID]:
        claimed = []
        while (job := await claims.claim_next(pool, name, LEASE)) is not None:
            claimed.append(job.id)
        return claimed

    results = await asyncio.wait_for(
        asyncio.gather(*(claimer(f"worker-{n}") for n in range(4))), 60
    )
    everything = [job_id for claimed in results for job_id in claimed]
    assert len(everything) == total
    assert len(set(everything)) == total
    assert all(claimed for claimed in results), "every claimer should have got some rows"
    async with database.connect() as connection:
        rows = await connection.execute(text("SELECT status, count(*) FROM analyses GROUP BY 1"))
        counts = {row.status: row.count for row in rows}
    assert counts == {"running": total}


async def test_claim_uses_the_partial_index(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        no_outcomes: list[list[object]] = [[] for _ in range(10)]
        rows = await connection.fetch(
            "EXPLAIN " + claims.EXCHANGE, "w", 1.0, 8, 0.0, 0.0, *no_outcomes
        )
    plan = "\n".join(row[0] for row in rows)
    assert "ix_analyses_claim" in plan, plan


async def test_triggers_notify_queued_and_done(
    database: AsyncEngine, database_url: str, pool: asyncpg.Pool
) -> None:
    received: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for channel in (notifications.ANALYSIS_QUEUED, notifications.ANALYSIS_DONE):
            await listener.add_listener(
                channel, lambda _c, _p, channel, payload: received.put_nowait((channel, payload))
            )
        row = await store(database)
        assert await asyncio.wait_for(received.get(), 5) == (notifications.ANALYSIS_QUEUED, "")
        job = await claims.claim_next(pool, "w", LEASE)
        assert job is not None
        assert await claims.finish(pool, job, "w", [LINE], "x")
        channel, payload = await asyncio.wait_for(received.get(), 5)
        assert channel == notifications.ANALYSIS_DONE
        assert notifications.parse_ids_payload(payload) == [row.id]
        assert received.empty(), "claiming (queued → running) must not notify"
    finally:
        await listener.close()


async def test_one_statement_ending_many_rows_tells_them_in_few_notifications(
    database: AsyncEngine, database_url: str, pool: asyncpg.Pool
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await listener.add_listener(
            notifications.ANALYSIS_DONE, lambda _c, _p, _ch, payload: received.put_nowait(payload)
        )
        rows = [await store(database) for _ in range(250)]
        jobs = (await claims.exchange(pool, "w", LEASE, claim=len(rows))).claimed
        assert len(jobs) == len(rows)
        outcomes = [
            Outcome.of(job, "w", Ending.DONE, result=[LINE], engine_name="x") for job in jobs
        ]
        ended = await claims.exchange(pool, "w", LEASE, claim=0, outcomes=outcomes)
        assert len(ended.ended) == len(rows)
        payloads = [await asyncio.wait_for(received.get(), 5) for _ in range(2)]
        await listener.execute("SELECT 1")
        assert received.empty(), "250 rows ended by one statement: two notifications"
        told = [notifications.parse_ids_payload(payload) or [] for payload in payloads]
        assert sorted(len(ids) for ids in told) == [50, 200]
        assert all(len(payload) <= 8000 for payload in payloads)
        assert sorted(i for ids in told for i in ids) == sorted(row.id for row in rows)
    finally:
        await listener.close()


async def test_a_row_fixed_by_hand_notifies_too(database: AsyncEngine, database_url: str) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await listener.add_listener(
            notifications.ANALYSIS_DONE, lambda _c, _p, _ch, payload: received.put_nowait(payload)
        )
        row = await store(database)
        async with database.begin() as connection:
            await connection.execute(
                text("UPDATE analyses SET status = 'failed', error = 'by hand' WHERE id = :id"),
                {"id": row.id},
            )
        assert await asyncio.wait_for(received.get(), 5) == str(row.id)
    finally:
        await listener.close()


async def test_terminal_among_reports_finished_ids(database: AsyncEngine) -> None:
    queued = await store(database)
    finished = await store(database, dataclasses.replace(request(), finished_result=()))
    assert finished.status is AnalysisStatus.DONE
    assert finished.result == []
    found = await notifications.terminal_among(database, [queued.id, finished.id, uuid.uuid4()])
    assert found == {finished.id}


async def test_the_ending_rule_is_inlined_and_says_what_it_says(database: AsyncEngine) -> None:
    # Inlined, the rule costs an expression per row ended, not a SQL function call.
    cases = {
        ("done", False, 1, 3): "done",
        ("failed", True, 1, 3): "failed",
        ("canceled", False, 3, 3): "canceled",
        ("retry", False, 1, 3): "queued",
        ("retry", False, 3, 3): "failed",
        ("retry", True, 1, 3): "canceled",
        ("lost", False, 2, 3): "queued",
        ("released", False, 3, 3): "queued",
    }
    async with database.connect() as connection:
        for (ending, cancel, attempts, most), status in cases.items():
            arguments = {"e": ending, "c": cancel, "a": attempts, "m": most}
            ended = await connection.execute(
                text("SELECT analysis_ending_status(:e, :c, :a, :m)::text"), arguments
            )
            assert ended.scalar_one() == status, (ending, cancel, attempts, most)
        plan = await connection.execute(
            text(
                "EXPLAIN (VERBOSE) SELECT analysis_ending_status(x, false, 1, 3)"
                " FROM (VALUES ('retry'), ('done')) AS v(x)"
            )
        )
        assert "analysis_ending_status" not in "\n".join(row[0] for row in plan)
