"""Retention: finished analyses and stored persisted queries are deleted once old.

The worker's sweep calls `sweep` on every interval. Each call deletes in small batches,
one short transaction per batch, and stops after a bounded number of batches, so it never
holds many row locks nor runs for long; whatever is left goes on the next interval.
Queued and running rows are never deleted, however old. Days ≤ 0 keep everything.

What retention will remove, in psql (30 is `RETENTION_DAYS`, the second 30 is
`PERSISTED_QUERY_DAYS`):

    SELECT count(*), min(finished_at) FROM analyses
     WHERE finished_at < now() - interval '30 days'
       AND status IN ('done', 'failed', 'canceled');
    SELECT count(*), min(created_at) FROM persisted_queries
     WHERE created_at < now() - interval '30 days';
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors

DELETE_FINISHED = text(
    """
    WITH expired AS (
        -- finished rows past the cut-off, oldest first, by the partial index on
        -- finished_at; a row someone else holds is skipped, not waited for
        SELECT id FROM analyses
         WHERE finished_at < now() - CAST(:days AS double precision) * interval '1 day'
           AND status IN ('done', 'failed', 'canceled')
         ORDER BY finished_at
         LIMIT :batch
           FOR UPDATE SKIP LOCKED
    )
    DELETE FROM analyses
     -- by primary key, whatever the planner guesses of LIMIT :batch
     WHERE id = ANY (ARRAY(SELECT id FROM expired))
    """
)


@errors.translated
async def delete_finished(engine: AsyncEngine, older_than_days: float, batch: int) -> int:
    """Delete up to `batch` done, failed or canceled rows that finished more than
    `older_than_days` ago, oldest first; how many were deleted."""
    async with engine.begin() as connection:
        deleted = await connection.execute(
            DELETE_FINISHED, {"days": older_than_days, "batch": batch}
        )
    return deleted.rowcount


EXPIRE_PERSISTED_QUERIES = text(
    """
    WITH expired AS (
        -- documents registered before the cut-off, oldest first; a row another
        -- process holds (a concurrent registration) is skipped, not waited for
        SELECT sha256 FROM persisted_queries
         WHERE created_at < now() - CAST(:days AS double precision) * interval '1 day'
         ORDER BY created_at
         LIMIT :batch
           FOR UPDATE SKIP LOCKED
    )
    DELETE FROM persisted_queries
     -- by primary key
     WHERE sha256 = ANY (ARRAY(SELECT sha256 FROM expired))
    """
)


@errors.translated
async def expire_persisted_queries(engine: AsyncEngine, older_than_days: float, batch: int) -> int:
    """Delete up to `batch` persisted documents registered more than `older_than_days`
    ago, oldest first; how many were deleted. A client that sends an expired hash is
    answered `PERSISTED_QUERY_NOT_FOUND` and registers the document again."""
    async with engine.begin() as connection:
        deleted = await connection.execute(
            EXPIRE_PERSISTED_QUERIES, {"days": older_than_days, "batch": batch}
        )
    return deleted.rowcount


@dataclass(frozen=True)
class RetentionSwept:
    """What one retention sweep deleted."""

    analyses: int
    """Finished analyses deleted."""
    persisted_queries: int
    """Persisted documents deleted."""


async def sweep(
    engine: AsyncEngine,
    older_than_days: float,
    persisted_query_days: float,
    batch: int,
    max_batches: int,
) -> RetentionSwept:
    """Delete old finished analyses and old persisted documents, `batch` rows at a time
    while batches come back full, at most `max_batches` batches of each; days ≤ 0 keep
    everything of that kind (no statement runs)."""
    return RetentionSwept(
        analyses=await _in_batches(delete_finished, engine, older_than_days, batch, max_batches),
        persisted_queries=await _in_batches(
            expire_persisted_queries, engine, persisted_query_days, batch, max_batches
        ),
    )


async def _in_batches(
    delete: Callable[[AsyncEngine, float, int], Awaitable[int]],
    engine: AsyncEngine,
    older_than_days: float,
    batch: int,
    max_batches: int,
) -> int:
    """Run `delete` until a batch comes back short or `max_batches` have run; the total."""
    if older_than_days <= 0 or batch <= 0:
        return 0
    total = 0
    for _ in range(max_batches):
        deleted = await delete(engine, older_than_days, batch)
        total += deleted
        if deleted < batch:
            break
    return total
