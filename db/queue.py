"""Every statement the queue runs, by name.

The table is the queue. A row moves queued → running (claim) → done | failed (finish,
fail); triggers in the migration send the notifications. No transaction stays open
while an engine thinks: claim and finish are each one short statement, and a running
row is visible to anyone with psql.

`worker_id` fences every write a worker makes: a worker whose row was taken from it
(see leases) finds its late write matches nothing and learns so from the return value.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors
from db.models import Analysis, AnalysisStatus, ResultLine
from db.session import session


@dataclass(frozen=True)
class NewAnalysis:
    """A validated request, ready to store."""

    fen: str
    """The position, normalised by python-chess."""
    num_moves_to_return: int
    """How many lines the result lists at most."""
    time_limit: float
    """Seconds the engine may think."""
    depth_limit: int | None
    """Plies the engine may search; None for no limit but time."""
    finished_result: tuple[ResultLine, ...] | None = None
    """A result known without an engine (no legal moves): the row is stored done."""


@dataclass(frozen=True)
class ClaimedJob:
    """A row a worker has claimed: what it must analyse."""

    id: uuid.UUID
    fen: str
    num_moves_to_return: int
    time_limit: float
    depth_limit: int | None
    attempts: int
    """How many times the row has been claimed, this claim included."""


@errors.translated
async def enqueue(engine: AsyncEngine, request: NewAnalysis) -> Analysis:
    """Store a request: queued, or done at once when its result is already known."""
    values: dict[str, object] = {
        "fen": request.fen,
        "num_moves_to_return": request.num_moves_to_return,
        "time_limit": request.time_limit,
        "depth_limit": request.depth_limit,
    }
    if request.finished_result is not None:
        values |= {
            "status": AnalysisStatus.DONE,
            "result": [line.to_json() for line in request.finished_result],
            "finished_at": text("now()"),
        }
    async with session(engine) as db, db.begin():
        row: Analysis | None = await db.scalar(insert(Analysis).values(values).returning(Analysis))
    if row is None:
        raise errors.DatabaseError("INSERT … RETURNING returned no row")
    return row


@errors.translated
async def get(engine: AsyncEngine, analysis_id: uuid.UUID) -> Analysis | None:
    """The row with `analysis_id`, or None."""
    async with session(engine) as db:
        row: Analysis | None = await db.scalar(select(Analysis).where(Analysis.id == analysis_id))
    return row


CLAIM_NEXT = text(
    """
    UPDATE analyses
       SET status = 'running',
           attempts = attempts + 1,
           worker_id = :worker_id,
           started_at = now(),
           lease_expires_at = now() + make_interval(secs => :lease_seconds)
     WHERE id = (
           -- the oldest row of the highest priority, by the partial claim index;
           -- rows other claimers hold are skipped, not waited for
           SELECT id FROM analyses
            WHERE status = 'queued'
            ORDER BY priority DESC, created_at
              FOR UPDATE SKIP LOCKED
            LIMIT 1)
    RETURNING id, fen, num_moves_to_return, time_limit, depth_limit, attempts
    """
)


@errors.translated
async def claim_next(
    engine: AsyncEngine, worker_id: str, lease_seconds: float
) -> ClaimedJob | None:
    """Take the next queued row for `worker_id`, or None when the queue is empty."""
    async with engine.begin() as connection:
        row = (
            await connection.execute(
                CLAIM_NEXT, {"worker_id": worker_id, "lease_seconds": lease_seconds}
            )
        ).one_or_none()
    if row is None:
        return None
    return ClaimedJob(
        id=row.id,
        fen=row.fen,
        num_moves_to_return=row.num_moves_to_return,
        time_limit=row.time_limit,
        depth_limit=row.depth_limit,
        attempts=row.attempts,
    )


FINISH = text(
    """
    UPDATE analyses
       SET status = 'done',
           result = CAST(:result AS jsonb),
           engine = :engine,
           error = NULL,
           finished_at = now(),
           lease_expires_at = NULL
     WHERE id = :id AND status = 'running' AND worker_id = :worker_id
    """
)


@errors.translated
async def finish(
    engine: AsyncEngine,
    job_id: uuid.UUID,
    worker_id: str,
    result: Sequence[ResultLine],
    engine_name: str,
) -> bool:
    """Record a result; False when the row is no longer this worker's to finish."""
    payload = json.dumps([line.to_json() for line in result])
    async with engine.begin() as connection:
        written = await connection.execute(
            FINISH,
            {"id": job_id, "worker_id": worker_id, "result": payload, "engine": engine_name},
        )
    return bool(written.rowcount)


FAIL = text(
    """
    UPDATE analyses
       SET status = 'failed',
           error = :error,
           engine = coalesce(:engine, engine),
           finished_at = now(),
           lease_expires_at = NULL
     WHERE id = :id AND status = 'running' AND worker_id = :worker_id
    """
)


@errors.translated
async def fail(
    engine: AsyncEngine,
    job_id: uuid.UUID,
    worker_id: str,
    error: str,
    engine_name: str | None = None,
) -> bool:
    """Record that the analysis cannot be done; False when the row is no longer ours."""
    async with engine.begin() as connection:
        written = await connection.execute(
            FAIL, {"id": job_id, "worker_id": worker_id, "error": error, "engine": engine_name}
        )
    return bool(written.rowcount)


TERMINAL_AMONG = text(
    """
    SELECT id FROM analyses
     WHERE id = ANY(:ids) AND status IN ('done', 'failed', 'canceled')
    """
)


@errors.translated
async def terminal_among(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` are done, failed or canceled (after missed notifications)."""
    if not ids:
        return set()
    async with engine.connect() as connection:
        rows = await connection.execute(TERMINAL_AMONG, {"ids": list(ids)})
        return {row.id for row in rows}
