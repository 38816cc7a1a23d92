"""The cancellation of an analysis, asked by a client.

A queued row is canceled at once and its tenant gets back what it was charged. A
running row is stopped by its worker, told through the `analysis_cancel` notification;
its worker's outcome settles the charge (`db.claims`).

Shared runs (`db.submissions`): a row that follows another's run is canceled at once
and the run goes on for the others. A row that carries a run others follow hands the
run over to the oldest of them, claim token and lease included, so that the engine
goes on undisturbed; only the last row of a run stops its engine.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors, tenants
from db.models import Analysis, AnalysisStatus
from db.submissions import get
from db.tenants import Tenant

REQUEST_CANCEL = text(
    """
    WITH asked AS (
        UPDATE analyses
           SET status = CASE WHEN status = 'queued' OR follows THEN 'canceled'
                             ELSE status END,
               finished_at = CASE WHEN status = 'queued' OR follows THEN now()
                                  ELSE finished_at END,
               -- a running row is stopped by its worker, told by the trigger's NOTIFY
               cancel_requested_at = CASE WHEN status = 'running' AND NOT follows
                                          THEN coalesce(cancel_requested_at, now())
                                          ELSE cancel_requested_at END,
               updated_at = now()
         WHERE id = :id AND status IN ('queued', 'running')
        RETURNING tenant_id, time_limit, status, follows
    )
    -- a row canceled before it ran gives its tenant back all it was charged (a running
    -- one is settled by its worker's outcome, in db.claims; a follower was charged as
    -- an answer without a run, and keeps it)
    UPDATE api_keys AS k
       SET budget_seconds = least(k.engine_seconds_per_hour, k.budget_seconds + asked.time_limit)
      FROM asked
     WHERE k.id = asked.tenant_id AND asked.status = 'canceled' AND NOT asked.follows
       AND k.engine_seconds_per_hour IS NOT NULL AND k.budget_seconds IS NOT NULL
    """
)

CANCELABLE = text(
    """
    SELECT id, status, follows, share_key, coalesce(run_id, id) AS run, tenant_id, time_limit,
           worker_id, attempts, max_attempts, lease_expires_at, started_at, turn, run_after,
           greatest(0, least(time_limit, coalesce(
               extract(epoch FROM now() - started_at), 0)))::float8 AS elapsed
      FROM analyses
     WHERE id = :id AND status IN ('queued', 'running')
       AND (:everyone OR tenant_id = ANY (:tenants))
       FOR UPDATE
    """
)

NEXT_CARRIER = text(
    """
    SELECT id, tenant_id FROM analyses
     WHERE run_id = :run AND follows AND status IN ('queued', 'running')
     ORDER BY created_at, id
     LIMIT 1
       FOR UPDATE
    """
)

HAND_OVER = (
    # the canceled carrier leaves the run first (one joinable run per share key), its
    # share key dropped so that its end is not copied to the others
    text(
        """
        UPDATE analyses
           SET status = 'canceled', finished_at = now(), share_key = NULL,
               lease_expires_at = NULL, updated_at = now()
         WHERE id = :id
        """
    ),
    # the oldest follower carries the run on: the claim token and the lease move to it
    text(
        """
        UPDATE analyses
           SET follows = false, status = :status, worker_id = :worker_id,
               attempts = :attempts, max_attempts = :max_attempts,
               lease_expires_at = :lease_expires_at, started_at = :started_at,
               turn = :turn, run_after = :run_after, updated_at = now()
         WHERE id = :next
        """
    ),
    # the canceled tenant gets back what the run has not used; the new carrier's tenant,
    # charged as a follower, now pays for the rest of it
    text(
        """
        UPDATE api_keys AS k
           SET budget_seconds = least(k.engine_seconds_per_hour,
                   coalesce(k.budget_seconds, k.engine_seconds_per_hour) + d.seconds)
          FROM (SELECT tenant, sum(seconds) AS seconds
                  FROM (VALUES (CAST(:canceled_tenant AS uuid), CAST(:refund AS float8)),
                               (CAST(:next_tenant AS uuid), -CAST(:charge AS float8)))
                       AS v(tenant, seconds)
                 GROUP BY tenant) AS d
         WHERE k.id = d.tenant AND k.engine_seconds_per_hour IS NOT NULL
        """
    ),
)


@errors.translated
async def request_cancel(
    engine: AsyncEngine, analysis_id: uuid.UUID, *, viewer: Tenant | None = None
) -> Analysis | None:
    """Cancel a queued row at once (refunding its charge), or ask the worker of a
    running one to stop it.

    A row that follows a shared run is canceled at once, and the run goes on. A row
    that carries a run others follow hands the run over to the oldest of them (its
    claim and lease included, so the engine is not interrupted) and is canceled at once;
    only the last row of a run stops its engine.

    A finished row is left as it is. The row afterwards, or None for an unknown id or
    one `viewer` may not see (see `get`).
    """
    everyone = viewer is None or viewer.is_admin
    owners = [] if viewer is None else [viewer.id, tenants.ANONYMOUS_ID]
    async with engine.begin() as connection:
        row = (
            await connection.execute(
                CANCELABLE, {"id": analysis_id, "everyone": everyone, "tenants": owners}
            )
        ).first()
        if row is not None:
            following = None
            if row.share_key is not None and not row.follows:
                following = (await connection.execute(NEXT_CARRIER, {"run": row.run})).first()
            if following is None:
                await connection.execute(REQUEST_CANCEL, {"id": analysis_id})
            else:
                await _hand_over(connection, row, following)
    return await get(engine, analysis_id, viewer=viewer)


async def _hand_over(connection: Any, carrier: Any, following: Any) -> None:
    elapsed = carrier.elapsed if carrier.status == AnalysisStatus.RUNNING.value else 0.0
    canceled, moved, settled = HAND_OVER
    await connection.execute(canceled, {"id": carrier.id})
    await connection.execute(
        moved,
        {
            "next": following.id,
            "status": carrier.status,
            "worker_id": carrier.worker_id,
            "attempts": carrier.attempts,
            "max_attempts": carrier.max_attempts,
            "lease_expires_at": carrier.lease_expires_at,
            "started_at": carrier.started_at,
            "turn": carrier.turn,
            "run_after": carrier.run_after,
        },
    )
    await connection.execute(
        settled,
        {
            "canceled_tenant": carrier.tenant_id,
            "refund": carrier.time_limit - elapsed,
            "next_tenant": following.tenant_id,
            "charge": max(0.0, carrier.time_limit - tenants.MIN_CHARGE_SECONDS - elapsed),
        },
    )
