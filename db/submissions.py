"""The API's statements: storing a request, reading rows, asking for a cancellation.

Triggers in the migrations send the notifications: a row stored queued wakes the
workers, a row reaching done, failed or canceled wakes its subscribers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import select, text
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


ENQUEUE = """
    -- $1..$5 the request; $6 the queue's cap
    INSERT INTO analyses (fen, num_moves_to_return, time_limit, depth_limit, max_attempts)
    SELECT $1, $2, $3, $4, $5
     -- counts at most $6 queued rows over the claim index, so the check stays cheap
     WHERE (SELECT count(*) FROM (
              SELECT 1 FROM analyses WHERE status = 'queued' LIMIT $6) AS queued) < $6
    RETURNING *
    """

STORE_FINISHED = """
    -- $1..$5 the request; $6 its result, known without an engine
    INSERT INTO analyses (fen, num_moves_to_return, time_limit, depth_limit, max_attempts,
                          status, result, finished_at)
    VALUES ($1, $2, $3, $4, $5, 'done', $6::jsonb, now())
    RETURNING *
    """


Connections = Any
"""Where a plain asyncpg statement runs: the API's pool, or one connection."""


@errors.translated
async def enqueue(
    connections: Connections, request: NewAnalysis, *, max_queued: int
) -> Analysis | None:
    """Store a request: queued, or done at once when its result is already known.

    None when `max_queued` rows already wait: nothing is stored. One statement, one
    round trip: the submit path's only visit to the database.
    """
    fields = (
        request.fen,
        request.num_moves_to_return,
        request.time_limit,
        request.depth_limit,
        request.max_attempts,
    )
    arguments: tuple[object, ...]
    if request.finished_result is None:
        statement, arguments = ENQUEUE, (*fields, max_queued)
    else:
        result = json.dumps([line.to_json() for line in request.finished_result])
        statement, arguments = STORE_FINISHED, (*fields, result)
    if isinstance(connections, asyncpg.Pool):
        async with connections.acquire() as connection:
            record = await errors.fetchrow(connection, statement, *arguments)
    else:
        record = await errors.fetchrow(connections, statement, *arguments)
    return None if record is None else analysis_from(record)


def analysis_from(record: asyncpg.Record) -> Analysis:
    """The model object of a row read over plain asyncpg (not attached to a session)."""
    values = dict(record)
    values["status"] = AnalysisStatus(values["status"])
    if isinstance(values["result"], str):  # plain asyncpg hands jsonb over as text
        values["result"] = json.loads(values["result"])
    return Analysis(**values)


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
