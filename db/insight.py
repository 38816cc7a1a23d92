"""Read-only views of the queue: newest-first listings, queue statistics, and whether the
database takes writes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, TextClause, literal_column, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors
from db.models import ANONYMOUS_TENANT, Analysis, AnalysisStatus, WorkerRow
from db.session import session


@dataclass(frozen=True)
class Position:
    """Where a listing page ends: the (created_at, id) of its last row."""

    created_at: datetime
    id: uuid.UUID


KEYED = Analysis.tenant_id != literal_column(f"'{ANONYMOUS_TENANT}'::uuid")
"""The predicate of `ix_analyses_tenant_listing`, spelled as the index spells it, so the
planner can use the index whatever the tenant's id (a bound parameter)."""


def newest_query(
    limit: int,
    after: Position | None = None,
    status: AnalysisStatus | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Select[Analysis]:
    """Up to `limit` rows, newest first, strictly after `after`, of everyone (None) or
    of one tenant: keyset pagination over `ix_analyses_listing` (or
    `ix_analyses_status_listing` with a status, `ix_analyses_tenant_listing` with a
    tenant other than the anonymous one)."""
    query = select(Analysis).order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Analysis.status == status)
    if tenant_id is not None:
        query = query.where(Analysis.tenant_id == tenant_id)
        if str(tenant_id) != ANONYMOUS_TENANT:
            query = query.where(KEYED)
    if after is not None:
        query = query.where(
            tuple_(Analysis.created_at, Analysis.id) < tuple_(after.created_at, after.id)
        )
    return query


@errors.translated
async def newest(
    engine: AsyncEngine,
    limit: int,
    after: Position | None = None,
    status: AnalysisStatus | None = None,
    tenant_id: uuid.UUID | None = None,
) -> list[Analysis]:
    """A page of `newest_query`: rows inserted meanwhile are newer than the first page,
    so they never shift later ones."""
    async with session(engine) as db:
        return list(await db.scalars(newest_query(limit, after, status, tenant_id)))


@dataclass(frozen=True)
class WorkerLoad:
    """A live worker and how many analyses it runs now."""

    worker: WorkerRow
    running: int


@dataclass(frozen=True)
class QueueStats:
    """The queue at one moment."""

    counts: dict[AnalysisStatus, int]
    oldest_queued_seconds: float | None
    finished_last_minute: int
    workers: list[WorkerLoad]
    running_unowned: int
    """Running rows whose worker has no live heartbeat row (lost; the sweep takes them back)."""


COUNTS = "SELECT status, count(*) AS n FROM analyses WHERE {tenant} GROUP BY status"
OLDEST_QUEUED = """
    SELECT extract(epoch FROM now() - min(created_at)) AS seconds
      FROM analyses WHERE status = 'queued' AND {tenant}
    """
FINISHED_LAST_MINUTE = """
    SELECT count(*) FROM analyses WHERE finished_at > now() - interval '1 minute' AND {tenant}
    """


def _statistics(tenant: str) -> dict[str, TextClause]:
    """The statistics' statements, restricted to the rows where `tenant` holds."""
    return {
        "counts": text(COUNTS.format(tenant=tenant)),
        "oldest": text(OLDEST_QUEUED.format(tenant=tenant)),
        "finished": text(FINISHED_LAST_MINUTE.format(tenant=tenant)),
    }


EVERYONE = _statistics("true")
ONE_TENANT = _statistics("tenant_id = :tenant")
"""A tenant's statistics are statements of their own, planned for one tenant."""
RUNNING_PER_WORKER = text(
    "SELECT worker_id, count(*) AS n FROM analyses"
    " WHERE status = 'running' AND NOT follows GROUP BY worker_id"
)


@errors.translated
async def queue_stats(engine: AsyncEngine, tenant_id: uuid.UUID | None = None) -> QueueStats:
    """Counts by status, queue age, throughput and the live workers' load, read in one
    snapshot (REPEATABLE READ) so the numbers agree with each other.

    With `tenant_id`, the counts, age and throughput are that tenant's, and the workers
    (everyone's) are left out: no workers, none unowned."""
    statements, tenant = (
        (EVERYONE, {}) if tenant_id is None else (ONE_TENANT, {"tenant": tenant_id})
    )
    async with session(engine) as db:
        await db.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        counts = {
            AnalysisStatus(row.status): row.n
            for row in await db.execute(statements["counts"], tenant)
        }
        oldest = (await db.execute(statements["oldest"], tenant)).scalar_one()
        finished = (await db.execute(statements["finished"], tenant)).scalar_one()
        if tenant_id is None:
            running = {row.worker_id: row.n for row in await db.execute(RUNNING_PER_WORKER)}
            alive = list(
                await db.scalars(
                    select(WorkerRow)
                    .where(WorkerRow.expires_at > text("now()"))
                    .order_by(WorkerRow.started_at)
                )
            )
        else:
            running, alive = {}, []
    loads = [WorkerLoad(worker, running.pop(worker.id, 0)) for worker in alive]
    return QueueStats(
        counts={status: counts.get(status, 0) for status in AnalysisStatus},
        oldest_queued_seconds=None if oldest is None else float(oldest),
        finished_last_minute=int(finished),
        workers=loads,
        running_unowned=sum(running.values()),
    )


WRITABLE = """
    -- a standby, or a primary switched read-only, answers but takes no writes
    SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'
    """


@errors.translated
async def writable(engine: AsyncEngine) -> bool:
    """True when the database answers and would take this session's writes."""
    async with engine.connect() as connection:
        return bool((await connection.execute(text(WRITABLE))).scalar_one())
