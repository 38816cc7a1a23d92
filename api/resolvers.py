"""What each GraphQL field does: validate, then call `db.submissions` (or `db.insight`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import strawberry

from api import cursors, validation
from api.context import ResolverInfo
from api.errors import (
    BadUserInputError,
    NotFoundError,
    QueueFullError,
    QuotaExceededError,
    RateLimitedError,
)
from api.types import (
    Analysis,
    AnalysisConnection,
    AnalysisEdge,
    AnalysisStatus,
    PageInfo,
    QueueStats,
    SubmitAnalysisInput,
    Viewer,
    WorkerStatus,
)
from db import cancellation, insight, models, submissions


async def analysis(info: ResolverInfo, id: strawberry.ID) -> Analysis | None:
    """The analysis with this id; null when there is none the caller may see (another
    tenant's reads exactly as an unknown id)."""
    viewer = info.context.tenant
    row = await submissions.get(info.context.database, validation.parse_id(id), viewer=viewer)
    return None if row is None else Analysis.from_model(row)


async def submit_analysis(info: ResolverInfo, input: SubmitAnalysisInput) -> Analysis:
    """Store a position for analysis and return it at once (status QUEUED).

    A position without legal moves is DONE at once with an empty result; one the
    position cache can answer is DONE at once with the cache's lines (`cached`); one
    whose search is under way for another request joins that search.
    """
    settings = info.context.settings
    started = time.perf_counter()
    request = validation.validate_submission(
        input.fen,
        input.num_moves_to_return,
        input.time_limit,
        input.depth_limit,
        info.context.limits,
        nodes_limit=input.nodes_limit,
        fresh=input.fresh,
    )
    request = dataclasses.replace(request, max_attempts=settings.max_attempts)
    tenant = info.context.tenant
    if tenant.is_anonymous:
        wait = info.context.anonymous_limit.take(info.context.address)
        if wait is not None:
            per_minute = settings.anonymous_per_address_per_minute
            message = f"{per_minute} submissions a minute from one address without a key"
            raise RateLimitedError(f"{message}; retry later, or send an API key", wait)
    stored = await submissions.enqueue(
        info.context.pool, request, tenant=tenant, max_queued=settings.max_queued
    )
    if isinstance(stored, submissions.Refusal):
        raise refusal(stored, settings.max_queued, settings.queue_full_retry_after)
    info.context.metrics.submit.observe(time.perf_counter() - started)
    return Analysis.from_model(stored)


def refusal(
    refused: submissions.Refusal, max_queued: int, queue_full_retry_after: float
) -> Exception:
    """The error to answer for a submission the queue refused."""
    if refused.reason == "quota_exceeded":
        return QuotaExceededError(refused.detail, refused.retry_after)
    if refused.reason == "rate_limited":
        return RateLimitedError(refused.detail, refused.retry_after)
    return QueueFullError(max_queued, queue_full_retry_after)


async def cancel_analysis(info: ResolverInfo, id: strawberry.ID) -> Analysis:
    """Cancel an analysis: a queued one at once, a running one as soon as its worker
    stops the engine (waited for up to `API_CANCEL_WAIT`); a finished one is unchanged."""
    analysis_id = validation.parse_id(id)
    database = info.context.database
    viewer = info.context.tenant
    with info.context.hub.waiter(analysis_id) as waiter:
        row = await cancellation.request_cancel(database, analysis_id, viewer=viewer)
        if row is None:
            raise NotFoundError(f"no analysis with id {analysis_id}")
        # A waiter is also woken by other subscriptions' first reads of the same id:
        # wait until the row has ended, or the cancel wait is over.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + info.context.settings.cancel_wait
        while not row.status.is_terminal and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), left)
            row = await submissions.get(database, analysis_id, viewer=viewer) or row
    return Analysis.from_model(row)


async def analyses(
    info: ResolverInfo,
    first: int = 20,
    after: str | None = None,
    status: AnalysisStatus | None = None,
) -> AnalysisConnection:
    """The caller's analyses (an admin's: everyone's), newest first, `first` at a time;
    pass `endCursor` as `after` for more. Anonymous work is never listed: an anonymous
    caller's listing is empty."""
    limit = info.context.settings.max_page_size
    if not 1 <= first <= limit:
        raise BadUserInputError("first", f"must be between 1 and {limit}")
    position = None if after is None else cursors.decode(after)
    wanted = None if status is None else models.AnalysisStatus(status.value)
    viewer = info.context.tenant
    rows: list[models.Analysis] = []
    if not viewer.is_anonymous:
        owner = None if viewer.is_admin else viewer.id
        rows = await insight.newest(
            info.context.database, first + 1, position, wanted, tenant_id=owner
        )
    page = rows[:first]
    edges = [
        AnalysisEdge(node=Analysis.from_model(row), cursor=cursors.encode(row)) for row in page
    ]
    return AnalysisConnection(
        edges=edges,
        page_info=PageInfo.of([edge.cursor for edge in edges], len(rows) > first, after),
    )


async def queue_stats(info: ResolverInfo) -> QueueStats:
    """Counts by status, age of the oldest queued analysis, throughput, live workers:
    of the whole queue for an admin; of the caller's own analyses for anyone else, and
    no workers."""
    viewer = info.context.tenant
    owner = None if viewer.is_admin else viewer.id
    stats = await insight.queue_stats(info.context.database, tenant_id=owner)
    workers = stats.workers if viewer.is_admin else []
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
            for load in workers
        ],
        running_without_worker=stats.running_unowned,
    )


async def viewer(info: ResolverInfo) -> Viewer:
    """Who asks: the tenant of the request's key, its scopes, quotas and usage."""
    return Viewer.from_tenant(info.context.tenant)
