"""What each GraphQL field does: validate, then call `db.submissions` (or `db.insight`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator

import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine

from api import cursors, validation
from api.context import ResolverInfo
from api.errors import BadUserInputError, NotFoundError, QueueFullError
from api.types import (
    Analysis,
    AnalysisConnection,
    AnalysisEdge,
    AnalysisStatus,
    PageInfo,
    QueueStats,
    SubmitAnalysisInput,
    WorkerStatus,
)
from db import insight, models, submissions
from db.errors import TransientDatabaseError

OUTAGE_RETRY_MIN_SECONDS = 0.2
OUTAGE_RETRY_MAX_SECONDS = 5.0


async def analysis(info: ResolverInfo, id: strawberry.ID) -> Analysis | None:
    """The analysis with this id; null when there is none."""
    row = await submissions.get(info.context.database, validation.parse_id(id))
    return None if row is None else Analysis.from_model(row)


async def submit_analysis(info: ResolverInfo, input: SubmitAnalysisInput) -> Analysis:
    """Store a position for analysis and return it at once (status QUEUED).

    A position without legal moves is DONE at once with an empty result.
    """
    settings = info.context.settings
    started = time.perf_counter()
    request = validation.validate_submission(
        input.fen,
        input.num_moves_to_return,
        input.time_limit,
        input.depth_limit,
        info.context.limits,
    )
    request = dataclasses.replace(request, max_attempts=settings.max_attempts)
    row = await submissions.enqueue(info.context.pool, request, max_queued=settings.max_queued)
    if row is None:
        raise QueueFullError(settings.max_queued, settings.queue_full_retry_after)
    info.context.metrics.submit.observe(time.perf_counter() - started)
    return Analysis.from_model(row)


async def cancel_analysis(info: ResolverInfo, id: strawberry.ID) -> Analysis:
    """Cancel an analysis: a queued one at once, a running one as soon as its worker
    stops the engine (waited for up to `API_CANCEL_WAIT`); a finished one is unchanged."""
    analysis_id = validation.parse_id(id)
    database = info.context.database
    with info.context.hub.waiter(analysis_id) as waiter:
        row = await submissions.request_cancel(database, analysis_id)
        if row is None:
            raise NotFoundError(f"no analysis with id {analysis_id}")
        if not row.status.is_terminal:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), info.context.settings.cancel_wait)
            row = await submissions.get(database, analysis_id) or row
    return Analysis.from_model(row)


async def analysis_completed(
    info: ResolverInfo,
    id: strawberry.ID,
) -> AsyncGenerator[Analysis, None]:
    """Emit the analysis once it is DONE, FAILED or CANCELED (at once if it already is)."""
    analysis_id = validation.parse_id(id)
    database = info.context.database
    hub = info.context.hub
    with hub.waiter(analysis_id) as waiter:
        # Registered before the first read: a completion cannot slip in between. The
        # hub reads the row (with those of other new subscriptions) and wakes us.
        hub.look_up(analysis_id)
        row = await waiter.wait() or await read_through_outage(database, analysis_id)
        while row is not None and not row.status.is_terminal:
            row = None  # not held through a wait that may last minutes
            # The hub hands over the row it read for the notification, if it could.
            row = await waiter.wait() or await read_through_outage(database, analysis_id)
    if row is None:
        raise NotFoundError(f"no analysis with id {analysis_id}")
    yield Analysis.from_model(row)


async def read_through_outage(
    database: AsyncEngine, analysis_id: uuid.UUID
) -> models.Analysis | None:
    """Read a row, waiting out a database outage: a subscription is a long wait anyway,
    so it rides the outage out instead of failing (the hub re-reads every awaited id
    once its connection is back, and wakes the waiters of those that finished)."""
    delay = OUTAGE_RETRY_MIN_SECONDS
    while True:
        try:
            return await submissions.get(database, analysis_id)
        except TransientDatabaseError:
            await asyncio.sleep(delay)
            delay = min(delay * 2, OUTAGE_RETRY_MAX_SECONDS)


async def analyses(
    info: ResolverInfo,
    first: int = 20,
    after: str | None = None,
    status: AnalysisStatus | None = None,
) -> AnalysisConnection:
    """Analyses, newest first, `first` at a time; pass `endCursor` as `after` for more."""
    limit = info.context.settings.max_page_size
    if not 1 <= first <= limit:
        raise BadUserInputError("first", f"must be between 1 and {limit}")
    position = None if after is None else cursors.decode(after)
    wanted = None if status is None else models.AnalysisStatus(status.value)
    rows = await insight.newest(info.context.database, first + 1, position, wanted)
    page = rows[:first]
    edges = [
        AnalysisEdge(node=Analysis.from_model(row), cursor=cursors.encode(row)) for row in page
    ]
    return AnalysisConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


async def queue_stats(info: ResolverInfo) -> QueueStats:
    """Counts by status, age of the oldest queued analysis, throughput, live workers."""
    stats = await insight.queue_stats(info.context.database)
    counts = stats.counts
    return QueueStats(
        queued=counts[models.AnalysisStatus.QUEUED],
        running=counts[models.AnalysisStatus.RUNNING],
        done=counts[models.AnalysisStatus.DONE],
        failed=counts[models.AnalysisStatus.FAILED],
        canceled=counts[models.AnalysisStatus.CANCELED],
        oldest_queued_age_seconds=stats.oldest_queued_seconds,
        finished_last_minute=stats.finished_last_minute,
        workers_alive=len(stats.workers),
        workers=[
            WorkerStatus(
                id=strawberry.ID(load.worker.id),
                host=load.worker.host,
                pid=load.worker.pid,
                slots=load.worker.slots,
                running=load.running,
                engine=load.worker.engine,
                listening=load.worker.listening,
                started_at=load.worker.started_at,
                last_seen_at=load.worker.last_seen_at,
            )
            for load in stats.workers
        ],
        running_without_worker=stats.running_unowned,
    )
