"""The worker's statements: claims, the end of every claim, and lease renewals.

A row's life:

    queued ──claim──▶ running ──done──────▶ done
      ▲                 │ ├──failed────────▶ failed
      │                 │ ├──canceled──────▶ canceled
      └─given back──────┘ └──given back, attempts used up──▶ failed
        (retry, released, lost)

Every end of a claim travels through one statement, `EXCHANGE`, whoever ends it: a
slot's result, its engine's death (retry), a failure, a cancellation, a worker giving a
row back as it stops (released), and the sweep taking back a row whose lease lapsed
(lost, in `db.sweep`). The retry-or-give-up rule is the SQL function
`analysis_ending_status` (migration 0007), called by that statement alone.

Workers take queued rows in the order of their `turn`, the virtual time a submission is
given by fair queuing among tenants (`db.submissions`). An end that finishes a row (done,
failed, canceled) settles its tenant's engine seconds in the same statement: what the
row was charged and its last attempt did not use goes back to the tenant's bucket.

Every end is fenced by its claim token, `(worker_id, attempts)`: a worker whose row was
taken from it finds that its late write matches nothing, and learns so from the result.
A finished row therefore never changes again: completion happens at most once.
Execution is at least once: a row whose worker vanished is claimed again.

The worker's hot path: plain asyncpg, prepared statements, one round trip for the ends
and the claims of many slots together. No transaction stays open while an engine thinks.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from db import errors
from db.models import AnalysisStatus, ResultLine


@dataclass(frozen=True)
class ClaimedJob:
    """A row a worker has claimed: what it must analyse, and its claim token."""

    id: uuid.UUID
    """The run's id: the row's own, or for a shared run the id it was first claimed
    under (its rows keep it as `run_id`, whichever of them carries it on)."""
    fen: str
    num_moves_to_return: int
    time_limit: float
    depth_limit: int | None
    attempts: int
    """How many times the row has been claimed, this claim included (part of the token)."""
    max_attempts: int
    nodes_limit: int | None = None
    watched: bool = False
    """Someone follows its search (`db.progress`): publish its progress."""


@dataclass(frozen=True)
class Searched:
    """How far a finished search went: what the position cache compares."""

    depth: int
    """The shallowest depth among its lines."""
    nodes: int
    seconds: float


class Ending(enum.StrEnum):
    """How a claim ends."""

    DONE = "done"
    """The analysis is finished: its result is stored."""
    FAILED = "failed"
    """It cannot be done (the engine refused the position): failed for good."""
    CANCELED = "canceled"
    """A client canceled it and the slot stopped."""
    RETRY = "retry"
    """The engine died or hung: back to the queue after a backoff, or failed once the
    row's attempts are used up."""
    RELEASED = "released"
    """The worker is stopping: straight back to the queue; the claim does not count."""
    LOST = "lost"
    """Its worker stopped renewing the lease (taken back by the sweep): as a retry."""


@dataclass(frozen=True)
class Outcome:
    """The end of one claim, waiting to be written."""

    id: uuid.UUID
    worker_id: str
    attempt: int
    """With `worker_id`, the claim token: only that claim may end the row."""
    ending: Ending
    result: tuple[ResultLine, ...] | None = None
    """The lines, for `DONE`."""
    engine_name: str | None = None
    """The engine that ran (kept on the row for every ending but `LOST`)."""
    error: str | None = None
    """Why, for every ending but `DONE` and `RELEASED`."""
    searched: Searched | None = None
    """How far the search went, for `DONE`: the result goes to the position cache."""

    @classmethod
    def of(
        cls,
        job: ClaimedJob,
        worker_id: str,
        ending: Ending,
        *,
        result: Sequence[ResultLine] | None = None,
        engine_name: str | None = None,
        error: str | None = None,
        searched: Searched | None = None,
    ) -> Outcome:
        """`job`'s claim by `worker_id`, ending as `ending`."""
        return cls(
            id=job.id,
            worker_id=worker_id,
            attempt=job.attempts,
            ending=ending,
            result=None if result is None else tuple(result),
            engine_name=engine_name,
            error=error,
            searched=searched,
        )


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter for retries: base·2^(attempt-1), at most cap,
    times a random factor in [0.5, 1)."""

    base_seconds: float
    cap_seconds: float


NO_BACKOFF = Backoff(0.0, 0.0)


@dataclass(frozen=True)
class Exchanged:
    """What one exchange did: rows claimed (in claim order) and claims ended."""

    claimed: list[ClaimedJob]
    ended: dict[uuid.UUID, AnalysisStatus]
    """Each outcome's row that its claim could still end, and the status it took; an
    outcome whose row is absent was fenced out (the row was taken back meanwhile)."""


EXCHANGE = """
    -- $1 worker id, $2 lease seconds, $3 rows to claim;
    -- $4, $5 retry backoff (base and cap, seconds);
    -- $6…$15 the outcomes, an array per field. An outcome's id is its run's: the id
    -- the row was claimed under (see `ClaimedJob.id`).
    WITH outcome AS (
        SELECT *
          FROM unnest($6::uuid[], $7::text[], $8::integer[], $9::text[],
                      $10::text[], $11::text[], $12::text[],
                      $13::integer[], $14::bigint[], $15::float8[])
               AS o(id, worker_id, attempt, ending, result, engine, error,
                    depth, nodes, seconds)
    ),
    ended AS (
        UPDATE analyses AS a
           SET status = analysis_ending_status(
                   o.ending, a.cancel_requested_at IS NOT NULL, a.attempts, a.max_attempts),
               -- a worker that stops is not the row's fault: its claim does not count
               attempts = a.attempts - (o.ending = 'released')::integer,
               result = CASE WHEN o.ending = 'done' THEN o.result::jsonb ELSE a.result END,
               engine = coalesce(o.engine, a.engine),
               error = CASE
                   WHEN o.ending = 'done' THEN NULL
                   WHEN o.ending IN ('retry', 'lost') AND analysis_ending_status(
                            o.ending, a.cancel_requested_at IS NOT NULL,
                            a.attempts, a.max_attempts) = 'failed'
                   THEN o.error || ' (gave up after ' || a.attempts || ' attempts)'
                   ELSE coalesce(o.error, a.error) END,
               run_after = CASE
                   WHEN o.ending IN ('retry', 'lost') THEN now() + make_interval(
                        secs => least($5, $4 * power(2, greatest(a.attempts - 1, 0)))
                                * (0.5 + random() / 2))
                   WHEN o.ending = 'released' THEN now()
                   ELSE a.run_after END,
               finished_at = CASE
                   WHEN analysis_ending_status(
                            o.ending, a.cancel_requested_at IS NOT NULL,
                            a.attempts, a.max_attempts) = 'queued'
                   THEN NULL ELSE now() END,
               -- who did the work stays on a finished row; a row given back is nobody's
               worker_id = CASE WHEN o.ending IN ('retry', 'released', 'lost') THEN NULL
                                ELSE a.worker_id END,
               lease_expires_at = NULL,
               updated_at = now()
          FROM outcome AS o
         -- by primary key, however many rows run (an OR of the two lookups would let
         -- the planner scan every running row instead); for a shared run whose first
         -- row was canceled, the row that carries it on under the same run id
         WHERE a.id = ANY ($6::uuid[] || ARRAY(SELECT r.id FROM analyses AS r
                                                WHERE r.run_id = ANY ($6::uuid[])))
           AND coalesce(a.run_id, a.id) = o.id
           -- the claim token: only the claim that took the row may end it
           AND a.status = 'running' AND a.worker_id = o.worker_id AND a.attempts = o.attempt
           -- the sweep takes back only a lease that has lapsed (re-checked on the row
           -- version the update locks, so a renewal meanwhile wins)
           AND (o.ending <> 'lost' OR a.lease_expires_at < now())
        RETURNING coalesce(a.run_id, a.id) AS id, a.status, a.tenant_id, a.time_limit,
                  a.started_at, a.finished_at, a.position_key, a.num_moves_to_return
    ),
    cached AS (
        -- a finished search joins the position cache when it went deeper than what the
        -- cache holds for its position and number of lines (one row per pair, however
        -- many of this statement's outcomes searched it)
        INSERT INTO position_cache AS c (position_key, lines, depth, nodes, seconds,
                                         result, engine)
        SELECT DISTINCT ON (e.position_key, e.num_moves_to_return)
               e.position_key, e.num_moves_to_return, o.depth, o.nodes, o.seconds,
               o.result::jsonb, o.engine
          FROM ended AS e JOIN outcome AS o ON o.id = e.id
         WHERE e.status = 'done' AND e.position_key IS NOT NULL AND o.depth IS NOT NULL
           AND o.result <> '[]'
         ORDER BY e.position_key, e.num_moves_to_return, o.depth DESC, o.nodes DESC
        ON CONFLICT (position_key, lines) DO UPDATE
           SET depth = excluded.depth, nodes = excluded.nodes, seconds = excluded.seconds,
               result = excluded.result, engine = excluded.engine, updated_at = now()
         WHERE (excluded.depth, excluded.nodes) > (c.depth, c.nodes)
    ),
    refunds AS (
        -- a finished row gives its tenant back what it was charged and did not use: its
        -- time limit less its last attempt's time, per tenant
        SELECT tenant_id, sum(time_limit - least(time_limit, greatest(0,
                   extract(epoch FROM finished_at - started_at)))) AS seconds
          FROM ended
         WHERE status IN ('done', 'failed', 'canceled')
         GROUP BY tenant_id
    ),
    tenants AS (
        -- only tenants with an engine-seconds quota keep a bucket; their rows are locked
        -- in one order, so that concurrent exchanges wait for each other, never deadlock
        SELECT id FROM api_keys
         WHERE id IN (SELECT tenant_id FROM refunds)
           AND engine_seconds_per_hour IS NOT NULL AND budget_seconds IS NOT NULL
         ORDER BY id
           FOR NO KEY UPDATE
    ),
    refunded AS (
        UPDATE api_keys AS k
           SET budget_seconds = least(k.engine_seconds_per_hour,
                                      k.budget_seconds + refunds.seconds)
          FROM refunds, tenants
         WHERE k.id = refunds.tenant_id AND k.id = tenants.id
    ),
    due AS (
        -- the due rows with the earliest turns, by the partial claim index; rows other
        -- claimers hold are skipped, not waited for (a locking CTE runs once); rows that
        -- follow another's run are never claimed
        SELECT id FROM analyses
         WHERE status = 'queued' AND NOT follows AND run_after <= now()
         ORDER BY turn
         LIMIT $3
           FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE analyses AS a
           SET status = 'running',
               attempts = a.attempts + 1,
               worker_id = $1,
               started_at = now(),
               lease_expires_at = now() + make_interval(secs => $2),
               updated_at = now()
         -- by primary key, whatever the planner guesses of LIMIT $3
         WHERE a.id = ANY (ARRAY(SELECT id FROM due))
        RETURNING coalesce(a.run_id, a.id) AS id, a.fen, a.num_moves_to_return,
                  a.time_limit, a.depth_limit, a.nodes_limit, a.attempts, a.max_attempts,
                  a.turn,
                  EXISTS (SELECT 1 FROM analysis_progress AS p
                           WHERE p.run_id = coalesce(a.run_id, a.id)
                             AND p.watched_until > now()) AS watched
    )
    -- the rows ended are running, the rows claimed are queued: never the same row
    SELECT claimed.*, NULL::analysis_status AS status FROM claimed
    UNION ALL
    SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, status FROM ended
    """


@errors.translated
async def exchange(
    pool: asyncpg.Pool,
    worker_id: str,
    lease_seconds: float,
    *,
    claim: int,
    outcomes: Sequence[Outcome] = (),
    backoff: Backoff = NO_BACKOFF,
) -> Exchanged:
    """End the claims of `outcomes` and take up to `claim` due queued rows for
    `worker_id`, in one statement; the rows come in the order of their turns."""
    rows = await pool.fetch(
        EXCHANGE,
        worker_id,
        lease_seconds,
        max(claim, 0),
        backoff.base_seconds,
        backoff.cap_seconds,
        [outcome.id for outcome in outcomes],
        [outcome.worker_id for outcome in outcomes],
        [outcome.attempt for outcome in outcomes],
        [outcome.ending.value for outcome in outcomes],
        [_result_json(outcome.result) for outcome in outcomes],
        [outcome.engine_name for outcome in outcomes],
        [outcome.error for outcome in outcomes],
        [None if o.searched is None else o.searched.depth for o in outcomes],
        [None if o.searched is None else o.searched.nodes for o in outcomes],
        [None if o.searched is None else o.searched.seconds for o in outcomes],
    )
    claimed = sorted(
        (row for row in rows if row["status"] is None),
        key=lambda row: row["turn"],
    )
    return Exchanged(
        claimed=[
            ClaimedJob(
                id=row["id"],
                fen=row["fen"],
                num_moves_to_return=row["num_moves_to_return"],
                time_limit=row["time_limit"],
                depth_limit=row["depth_limit"],
                attempts=row["attempts"],
                max_attempts=row["max_attempts"],
                nodes_limit=row["nodes_limit"],
                watched=row["watched"],
            )
            for row in claimed
        ],
        ended={row["id"]: AnalysisStatus(row["status"]) for row in rows if row["status"]},
    )


def _result_json(result: tuple[ResultLine, ...] | None) -> str | None:
    return None if result is None else json.dumps([line.to_json() for line in result])


async def claim_next(pool: asyncpg.Pool, worker_id: str, lease_seconds: float) -> ClaimedJob | None:
    """Take the next due queued row for `worker_id`, or None when none is due."""
    claimed = (await exchange(pool, worker_id, lease_seconds, claim=1)).claimed
    return claimed[0] if claimed else None


async def end(
    pool: asyncpg.Pool, outcome: Outcome, backoff: Backoff = NO_BACKOFF
) -> AnalysisStatus | None:
    """End one claim; the row's new status, or None when it is no longer that claim's."""
    ended = (
        await exchange(pool, outcome.worker_id, 0, claim=0, outcomes=[outcome], backoff=backoff)
    ).ended
    return ended.get(outcome.id)


async def finish(
    pool: asyncpg.Pool,
    job: ClaimedJob,
    worker_id: str,
    result: Sequence[ResultLine],
    engine_name: str,
) -> bool:
    """Record one result; False when the row is no longer this claim's to finish."""
    outcome = Outcome.of(job, worker_id, Ending.DONE, result=result, engine_name=engine_name)
    return await end(pool, outcome) is AnalysisStatus.DONE


@dataclass(frozen=True)
class Lease:
    """A row this worker still holds, as the heartbeat found it."""

    id: uuid.UUID
    cancel_requested: bool
    """A client asked to cancel it: the worker should stop its engine."""
    watched: bool = False
    """Someone follows its search: the worker publishes its progress."""


RENEW_LEASES = """
    -- $1 worker id, $2 the runs, $3 lease seconds. Not fenced by expiry: a worker that
    -- was cut off from the database keeps what nobody has taken back meanwhile.
    UPDATE analyses AS a
       SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
     -- by primary key, as the exchange finds the rows it ends
     WHERE a.id = ANY ($2::uuid[] || ARRAY(SELECT r.id FROM analyses AS r
                                            WHERE r.run_id = ANY ($2::uuid[])))
       AND a.status = 'running' AND a.worker_id = $1
    RETURNING coalesce(a.run_id, a.id) AS id,
              a.cancel_requested_at IS NOT NULL AS cancel_requested,
              EXISTS (SELECT 1 FROM analysis_progress AS p
                       WHERE p.run_id = coalesce(a.run_id, a.id)
                         AND p.watched_until > now()) AS watched
    """


@errors.translated
async def renew_leases(
    pool: asyncpg.Pool, worker_id: str, ids: Sequence[uuid.UUID], lease_seconds: float
) -> list[Lease]:
    """Extend the leases of the rows this worker runs; the ones it still holds."""
    if not ids:
        return []
    rows = await pool.fetch(RENEW_LEASES, worker_id, list(ids), lease_seconds)
    return [
        Lease(id=row["id"], cancel_requested=row["cancel_requested"], watched=row["watched"])
        for row in rows
    ]


NEXT_DUE = """
    SELECT extract(epoch FROM min(run_after) - now())::float8 AS seconds
      FROM analyses WHERE status = 'queued' AND NOT follows
    """


@errors.translated
async def next_due_in(pool: asyncpg.Pool) -> float | None:
    """Seconds until the earliest queued row may be claimed (≤ 0: now); None if none."""
    seconds = await pool.fetchval(NEXT_DUE)
    return None if seconds is None else float(seconds)


COUNT_QUEUED = "SELECT count(*) FROM analyses WHERE status = 'queued' AND NOT follows"


@errors.translated
async def count_queued(pool: asyncpg.Pool) -> int:
    """How many runs wait in the queue (over the partial claim index)."""
    return int(await pool.fetchval(COUNT_QUEUED))
