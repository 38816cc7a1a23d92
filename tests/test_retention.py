"""Retention on a real PostgreSQL: only old finished analyses and old persisted documents
go, a batch at a time, skipping locked rows, over the partial index; and the worker's
sweep applies it while it works."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import retention
from db.models import AnalysisStatus
from tests.conftest import REFERENCE_FEN, WorkerFactory
from tests.rows import request, store, wait_terminal

ADD_ANALYSES = text(
    """
    INSERT INTO analyses (fen, num_moves_to_return, time_limit, status, created_at, finished_at)
    SELECT :fen, 1, 0.1, CAST(:status AS analysis_status),
           now() - make_interval(days => :created_days_ago + n),
           now() - make_interval(days => CAST(:finished_days_ago AS integer) + n)
      FROM generate_series(0, :count - 1) AS n
    RETURNING id
    """
)

ADD_PERSISTED_QUERIES = text(
    """
    INSERT INTO persisted_queries (sha256, query, created_at)
    SELECT md5(gen_random_uuid()::text), '{ __typename }',
           now() - make_interval(days => :days_ago + n)
      FROM generate_series(0, :count - 1) AS n
    RETURNING sha256
    """
)


async def add_analyses(
    database: AsyncEngine,
    status: AnalysisStatus,
    count: int,
    *,
    created_days_ago: int,
    finished_days_ago: int | None = None,
) -> list[uuid.UUID]:
    """Insert `count` rows, each a day older than the one before it (the first is
    `created_days_ago` / `finished_days_ago` old; unfinished rows have no finished_at)."""
    async with database.begin() as connection:
        rows = await connection.execute(
            ADD_ANALYSES,
            {
                "fen": REFERENCE_FEN,
                "status": status.value,
                "count": count,
                "created_days_ago": created_days_ago,
                "finished_days_ago": finished_days_ago,
            },
        )
        return [row.id for row in rows]


async def add_persisted_queries(database: AsyncEngine, count: int, days_ago: int) -> set[str]:
    """Insert `count` documents, each registered a day before the one before it."""
    async with database.begin() as connection:
        rows = await connection.execute(
            ADD_PERSISTED_QUERIES, {"count": count, "days_ago": days_ago}
        )
        return {row.sha256 for row in rows}


async def analysis_ids(database: AsyncEngine) -> set[uuid.UUID]:
    async with database.connect() as connection:
        return {row.id for row in await connection.execute(text("SELECT id FROM analyses"))}


async def persisted_hashes(database: AsyncEngine) -> set[str]:
    async with database.connect() as connection:
        rows = await connection.execute(text("SELECT sha256 FROM persisted_queries"))
        return {row.sha256 for row in rows}


COUNT_LEFT = text(
    """
    SELECT (SELECT count(*) FROM analyses WHERE id = ANY (:ids))
         + (SELECT count(*) FROM persisted_queries WHERE sha256 = ANY (:hashes))
    """
)


async def count_left(database: AsyncEngine, ids: Sequence[uuid.UUID], hashes: Iterable[str]) -> int:
    """How many of these analyses and documents are still stored."""
    async with database.connect() as connection:
        left = await connection.execute(COUNT_LEFT, {"ids": list(ids), "hashes": list(hashes)})
        return int(left.scalar_one())


async def add_every_kind(database: AsyncEngine) -> tuple[list[uuid.UUID], set[uuid.UUID]]:
    """Rows of every status, old and recent: the old finished ones, oldest first, and
    the ids that retention of 30 days keeps."""
    old_done = await add_analyses(
        database, AnalysisStatus.DONE, 3, created_days_ago=40, finished_days_ago=40
    )
    old_failed = await add_analyses(
        database, AnalysisStatus.FAILED, 2, created_days_ago=50, finished_days_ago=50
    )
    old_canceled = await add_analyses(
        database, AnalysisStatus.CANCELED, 2, created_days_ago=60, finished_days_ago=60
    )
    kept = [
        *await add_analyses(
            database, AnalysisStatus.DONE, 2, created_days_ago=1, finished_days_ago=1
        ),
        # created long ago, finished lately: its age is its finish
        *await add_analyses(
            database, AnalysisStatus.FAILED, 1, created_days_ago=100, finished_days_ago=1
        ),
        *await add_analyses(
            database, AnalysisStatus.CANCELED, 1, created_days_ago=0, finished_days_ago=0
        ),
        # never finished, however old
        *await add_analyses(database, AnalysisStatus.QUEUED, 2, created_days_ago=100),
        *await add_analyses(database, AnalysisStatus.RUNNING, 2, created_days_ago=100),
    ]
    # Each list is youngest first; oldest first overall: canceled, failed, done.
    oldest_first = [*reversed(old_canceled), *reversed(old_failed), *reversed(old_done)]
    return oldest_first, set(kept)


async def test_only_old_finished_analyses_are_deleted_oldest_first_in_batches(
    database: AsyncEngine,
) -> None:
    old, kept = await add_every_kind(database)
    assert len(old) == 7

    assert await retention.delete_finished(database, 30, batch=3) == 3
    assert await analysis_ids(database) == kept | set(old[3:])
    assert await retention.delete_finished(database, 30, batch=3) == 3
    assert await analysis_ids(database) == kept | set(old[6:])
    assert await retention.delete_finished(database, 30, batch=3) == 1
    assert await retention.delete_finished(database, 30, batch=3) == 0
    assert await analysis_ids(database) == kept


async def test_a_cut_off_in_fractions_of_a_day(database: AsyncEngine) -> None:
    await add_analyses(database, AnalysisStatus.DONE, 1, created_days_ago=1, finished_days_ago=1)
    [today] = await add_analyses(
        database, AnalysisStatus.DONE, 1, created_days_ago=0, finished_days_ago=0
    )
    assert await retention.delete_finished(database, 0.5, batch=10) == 1
    assert await analysis_ids(database) == {today}


async def test_a_sweep_runs_full_batches_up_to_its_limit(database: AsyncEngine) -> None:
    old, kept = await add_every_kind(database)
    await add_persisted_queries(database, 5, days_ago=40)
    recent_documents = await add_persisted_queries(database, 2, days_ago=0)

    first = await retention.sweep(database, 30, 30, batch=3, max_batches=2)
    assert first == retention.RetentionSwept(analyses=6, persisted_queries=5)
    assert await analysis_ids(database) == kept | set(old[6:])
    # The rest on the next sweep; then nothing is left to delete.
    second = await retention.sweep(database, 30, 30, batch=3, max_batches=2)
    assert second == retention.RetentionSwept(analyses=1, persisted_queries=0)
    assert await analysis_ids(database) == kept
    assert await persisted_hashes(database) == recent_documents


async def test_zero_days_keeps_everything(database: AsyncEngine) -> None:
    old, kept = await add_every_kind(database)
    documents = await add_persisted_queries(database, 4, days_ago=400)

    swept = await retention.sweep(database, 0, 0, batch=3, max_batches=10)
    assert swept == retention.RetentionSwept(analyses=0, persisted_queries=0)
    assert await analysis_ids(database) == kept | set(old)
    assert await persisted_hashes(database) == documents


async def test_each_kind_has_its_own_days(database: AsyncEngine) -> None:
    old, kept = await add_every_kind(database)
    await add_persisted_queries(database, 4, days_ago=40)

    swept = await retention.sweep(database, 0, 30, batch=3, max_batches=10)
    assert swept == retention.RetentionSwept(analyses=0, persisted_queries=4)
    assert await analysis_ids(database) == kept | set(old)
    assert await persisted_hashes(database) == set()


async def test_persisted_queries_expire_oldest_first_in_batches(database: AsyncEngine) -> None:
    old = await add_persisted_queries(database, 5, days_ago=40)
    recent = await add_persisted_queries(database, 2, days_ago=0)
    async with database.connect() as connection:
        rows = await connection.execute(
            text("SELECT sha256 FROM persisted_queries ORDER BY created_at")
        )
        oldest_first = [row.sha256 for row in rows][:5]
    assert set(oldest_first) == old

    assert await retention.expire_persisted_queries(database, 30, batch=3) == 3
    assert await persisted_hashes(database) == recent | set(oldest_first[3:])
    assert await retention.expire_persisted_queries(database, 30, batch=3) == 2
    assert await retention.expire_persisted_queries(database, 30, batch=3) == 0
    assert await persisted_hashes(database) == recent


async def test_rows_someone_else_holds_are_skipped_not_waited_for(database: AsyncEngine) -> None:
    old, _ = await add_every_kind(database)
    held = old[0]
    async with database.begin() as holder:
        await holder.execute(text("SELECT 1 FROM analyses WHERE id = :id FOR UPDATE"), {"id": held})
        deleted = await asyncio.wait_for(retention.delete_finished(database, 30, batch=100), 5)
        assert deleted == len(old) - 1
    assert held in await analysis_ids(database)
    assert await retention.delete_finished(database, 30, batch=100) == 1


async def test_deleting_finished_rows_walks_the_partial_index_in_order(
    database: AsyncEngine,
) -> None:
    # A table big enough for the planner to choose as it would in production: a backlog
    # of old finished rows behind recent ones, and the queue itself.
    await add_analyses(
        database, AnalysisStatus.DONE, 3000, created_days_ago=40, finished_days_ago=40
    )
    await add_analyses(database, AnalysisStatus.DONE, 3000, created_days_ago=0, finished_days_ago=0)
    await add_analyses(database, AnalysisStatus.QUEUED, 1000, created_days_ago=0)
    async with database.begin() as connection:
        await connection.execute(text("ANALYZE analyses"))
        rows = await connection.execute(
            text("EXPLAIN " + retention.DELETE_FINISHED.text), {"days": 30, "batch": 500}
        )
        plan = "\n".join(row[0] for row in rows)
    assert "Index Scan using ix_analyses_finished_at" in plan, plan
    assert "Sort" not in plan, f"the index gives the order, oldest first: {plan}"
    assert "Seq Scan" not in plan, plan


async def test_the_worker_sweep_applies_retention_while_it_works(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    """End to end: the worker's sweep (engine/worker.py) applies retention with the
    worker's settings, on every sweep interval, while the worker analyses."""
    await start_worker(retention_days=1, sweep_interval=0.2, retention_batch=100)
    old = [
        *await add_analyses(
            database, AnalysisStatus.DONE, 600, created_days_ago=3, finished_days_ago=2
        ),
        *await add_analyses(
            database, AnalysisStatus.FAILED, 200, created_days_ago=3, finished_days_ago=2
        ),
        *await add_analyses(
            database, AnalysisStatus.CANCELED, 200, created_days_ago=3, finished_days_ago=2
        ),
    ]
    old_documents = await add_persisted_queries(database, 10, days_ago=40)
    fresh = [await store(database, request(depth=4)) for _ in range(4)]

    async with asyncio.timeout(30):
        while await count_left(database, old, old_documents):
            await asyncio.sleep(0.1)

    for row in fresh:
        done = await wait_terminal(database, row)
        assert done.status is AnalysisStatus.DONE
    # A row old enough going is a sweep after they finished: they outlived it.
    marker = await add_analyses(
        database, AnalysisStatus.DONE, 1, created_days_ago=3, finished_days_ago=2
    )
    async with asyncio.timeout(30):
        while await count_left(database, marker, ()):
            await asyncio.sleep(0.1)
    async with database.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, status FROM analyses WHERE id = ANY (:ids)"),
            {"ids": [row.id for row in fresh]},
        )
        still_there = {row.id: row.status for row in rows}
    assert still_there == {row.id: AnalysisStatus.DONE.value for row in fresh}
