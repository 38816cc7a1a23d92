"""The sweep's statements: taking back rows whose worker stopped renewing their lease.

Any worker sweeps, for all of them. A running row whose lease lapsed is ended as `lost`
through the same statement that ends every claim (`db.claims.EXCHANGE`), fenced by the
claim token it was found with and re-checked for expiry on the row it locks: a worker
that renews or finishes meanwhile wins. So the retry-or-give-up rule is the same for a
row whose worker vanished as for one whose engine died.

Leases lapse while the database is down, although their workers live on. A lease is
therefore only taken back once the server has been up for `grace_seconds` (its workers
reconnect and renew within a heartbeat or two); the caller likewise waits until the
database has taken writes for a grace (`writable`) after its own last failure, since a
failover or a network cut restarts no server.
"""

from __future__ import annotations

import uuid

import asyncpg

from db import claims, errors, insight
from db.models import AnalysisStatus

LOST = "worker lost (lease expired)"
"""The error a row taken back carries."""

EXPIRED = """
    -- $1 grace seconds after a server start, $2 rows at most
    SELECT coalesce(run_id, id) AS id, worker_id, attempts FROM analyses
     WHERE status = 'running' AND lease_expires_at < now()
       -- leases lapsed while the server was down belong to workers that have had no
       -- chance to renew them yet
       AND pg_postmaster_start_time() < now() - make_interval(secs => $1)
     -- running rows by the status listing index (as many as slots and rows claimed
     -- ahead), the longest lapsed first
     ORDER BY lease_expires_at
     LIMIT $2
    """


@errors.translated
async def writable(pool: asyncpg.Pool) -> bool:
    """True when the database answers and would take this session's writes."""
    return bool(await pool.fetchval(insight.WRITABLE))


@errors.translated
async def requeue_expired(
    pool: asyncpg.Pool,
    backoff: claims.Backoff,
    *,
    grace_seconds: float = 0.0,
    batch: int = 100,
) -> dict[uuid.UUID, AnalysisStatus]:
    """Take back rows whose lease expired: queued again after a backoff, or failed once
    their attempts are used up (canceled if cancellation was asked); each row's new
    status."""
    rows = await pool.fetch(EXPIRED, grace_seconds, batch)
    if not rows:
        return {}
    outcomes = [
        claims.Outcome(
            id=row["id"],
            worker_id=row["worker_id"],
            attempt=row["attempts"],
            ending=claims.Ending.LOST,
            error=LOST,
        )
        for row in rows
    ]
    exchanged = await claims.exchange(pool, "", 0, claim=0, outcomes=outcomes, backoff=backoff)
    return exchanged.ended
