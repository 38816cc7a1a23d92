"""Shortcuts for putting rows in a test's database and watching them."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db import claims, submissions, tenants
from db.models import Analysis, AnalysisStatus
from tests.conftest import REFERENCE_FEN

NO_CAP = 1_000_000

ANONYMOUS = tenants.Tenant(tenants.ANONYMOUS_ID, "anonymous", frozenset({tenants.ANALYSE}))
"""The anonymous tenant with no quotas."""


def request(
    fen: str = REFERENCE_FEN,
    *,
    moves: int = 1,
    time_limit: float = 5.0,
    depth: int | None = None,
    max_attempts: int = 3,
) -> submissions.NewAnalysis:
    return submissions.NewAnalysis(
        fen=fen,
        num_moves_to_return=moves,
        time_limit=time_limit,
        depth_limit=depth,
        max_attempts=max_attempts,
    )


async def enqueue(
    connections: submissions.Connections,
    new: submissions.NewAnalysis | None = None,
    *,
    tenant: tenants.Tenant = ANONYMOUS,
    max_queued: int = NO_CAP,
    kind: int = 0,
) -> Analysis | submissions.Refusal:
    """Submit `new` (default: the reference position) for `tenant`."""
    return await submissions.enqueue(
        connections, new or request(), tenant=tenant, max_queued=max_queued, kind=kind
    )


async def store(
    database: AsyncEngine,
    new: submissions.NewAnalysis | None = None,
    *,
    tenant: tenants.Tenant = ANONYMOUS,
    kind: int = 0,
) -> Analysis:
    """Enqueue `new` (default: the reference position) for `tenant` with no queue cap."""
    async with database.connect() as connection:
        raw = await connection.get_raw_connection()
        row = await enqueue(raw.driver_connection, new, tenant=tenant, kind=kind)
    assert isinstance(row, Analysis), row
    return row


async def end_claim(
    pool: asyncpg.Pool,
    job: claims.ClaimedJob,
    worker_id: str,
    ending: claims.Ending,
    error: str | None = None,
    *,
    backoff: claims.Backoff = claims.NO_BACKOFF,
    engine: str | None = None,
) -> AnalysisStatus | None:
    """End `job`'s claim by `worker_id` as `ending`; the row's new status, or None."""
    outcome = claims.Outcome.of(job, worker_id, ending, engine_name=engine, error=error)
    return await claims.end(pool, outcome, backoff)


async def wait_terminal(database: AsyncEngine, row: Analysis, timeout: float = 20) -> Analysis:
    """Poll the row until it is terminal, for at most `timeout` seconds.

    Polling, because here the worker is under test and not the notification path.
    """
    async with asyncio.timeout(timeout):
        while True:
            current = await submissions.get(database, row.id)
            assert current is not None
            if current.status.is_terminal:
                return current
            await asyncio.sleep(0.02)
