"""The API's statements: storing a request, reading rows, asking for a cancellation.

Triggers in the migrations send the notifications: a row stored queued wakes the
workers, a row reaching done, failed or canceled wakes its subscribers.
"""

from __future__ import annotations

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
    max_attempts: int = 3
    """Claims allowed before a row whose engine or worker keeps dying is failed."""


ROOM_IN_QUEUE = text(
    """
    INSERT INTO analyses (fen, num_moves_to_return, time_limit, depth_limit, max_attempts)
    SELECT :fen, :num_moves_to_return, :time_limit, :depth_limit, :max_attempts
     -- counts at most :cap queued rows over the claim index, so the check stays cheap
     WHERE (SELECT count(*) FROM (
              SELECT 1 FROM analyses WHERE status = 'queued' LIMIT :cap) AS queued) < :cap
    RETURNING *
    """
)


@errors.translated
async def enqueue(engine: AsyncEngine, request: NewAnalysis, *, max_queued: int) -> Analysis | None:
    """Store a request: queued, or done at once when its result is already known.

    None when `max_queued` rows already wait: nothing is stored.
    """
    fields = {
        "fen": request.fen,
        "num_moves_to_return": request.num_moves_to_return,
        "time_limit": request.time_limit,
        "depth_limit": request.depth_limit,
        "max_attempts": request.max_attempts,
    }
    async with session(engine) as db, db.begin():
        if request.finished_result is None:
            statement = select(Analysis).from_statement(ROOM_IN_QUEUE)
            row: Analysis | None = await db.scalar(statement, {**fields, "cap": max_queued})
        else:
            finished = insert(Analysis).values(
                **fields,
                status=AnalysisStatus.DONE,
                result=[line.to_json() for line in request.finished_result],
                finished_at=text("now()"),
            )
            row = await db.scalar(finished.returning(Analysis))
    return row


@errors.translated
async def get(engine: AsyncEngine, analysis_id: uuid.UUID) -> Analysis | None:
    """The row with `analysis_id`, or None."""
    async with session(engine) as db:
        row: Analysis | None = await db.scalar(select(Analysis).where(Analysis.id == analysis_id))
    return row


@errors.translated
async def get_many(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> list[Analysis]:
    """The rows with these ids (those that exist), in one statement."""
    if not ids:
        return []
    async with session(engine) as db:
        return list(await db.scalars(select(Analysis).where(Analysis.id.in_(list(ids)))))


REQUEST_CANCEL = text(
    """
    UPDATE analyses
       SET status = CASE WHEN status = 'queued' THEN 'canceled'
                         ELSE status END,
           finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
           -- a running row is stopped by its worker, told by the trigger's NOTIFY
           cancel_requested_at = CASE WHEN status = 'running'
                                      THEN coalesce(cancel_requested_at, now())
                                      ELSE cancel_requested_at END
     WHERE id = :id AND status IN ('queued', 'running')
    """
)


@errors.translated
async def request_cancel(engine: AsyncEngine, analysis_id: uuid.UUID) -> Analysis | None:
    """Cancel a queued row at once, or ask the worker of a running one to stop it.

    A finished row is left as it is. The row afterwards, or None for an unknown id.
    """
    async with engine.begin() as connection:
        await connection.execute(REQUEST_CANCEL, {"id": analysis_id})
    return await get(engine, analysis_id)


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
