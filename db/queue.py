"""Every statement the queue runs, by name.

The table is the queue. A row's life:

    queued ──claim──▶ running ──finish──▶ done
      ▲                 │ ├──fail────────▶ failed
      │                 │ ├──cancel───────▶ canceled
      └──retry/release──┘ └──retry (attempts used up) ──▶ failed
    queued ──cancel──▶ canceled

Triggers in the migrations send the notifications. No transaction stays open while an
engine thinks: each transition is one short statement, and a running row is visible to
anyone with psql.

Every write a worker makes is fenced by its claim token, `(worker_id, attempts)`: a
worker whose row was taken from it (lease expired, row re-queued and claimed again)
finds that its late write matches nothing, and learns so from the return value. A
finished row therefore never changes again: completion happens at most once.
Execution is at least once: a row whose worker vanished is claimed again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
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


@dataclass(frozen=True)
class ClaimedJob:
    """A row a worker has claimed: what it must analyse, and its claim token."""

    id: uuid.UUID
    fen: str
    num_moves_to_return: int
    time_limit: float
    depth_limit: int | None
    attempts: int
    """How many times the row has been claimed, this claim included (part of the token)."""
    max_attempts: int


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter for retries: base·2^(attempt-1), at most cap,
    times a random factor in [0.5, 1)."""

    base_seconds: float
    cap_seconds: float

    @property
    def params(self) -> dict[str, float]:
        return {"backoff_base": self.base_seconds, "backoff_cap": self.cap_seconds}


@dataclass(frozen=True)
class Lease:
    """A row this worker still holds, as the heartbeat found it."""

    id: uuid.UUID
    cancel_requested: bool
    """A client asked to cancel it: the worker should stop its engine."""


# The retry delay, in SQL so the sweep and the worker compute it alike.
BACKOFF_SECONDS = (
    "least(:backoff_cap, :backoff_base * power(2, greatest(attempts - 1, 0)))"
    " * (0.5 + random() / 2)"
)

# A worker's claim token: only the claim that took the row may move it on.
FENCE = "id = :id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt"


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


# The claim: the oldest due rows of the highest priority, by the partial claim index;
# rows other claimers hold are skipped, not waited for (a locking CTE runs once).
# $1 worker id, $2 lease seconds, $3 how many.
_NEXT = """
    next AS (
        SELECT id FROM analyses
         WHERE status = 'queued' AND run_after <= now()
         ORDER BY priority DESC, created_at
         LIMIT $3
           FOR UPDATE SKIP LOCKED
    )"""
_TAKE = """
    UPDATE analyses AS a
       SET status = 'running',
           attempts = a.attempts + 1,
           worker_id = $1,
           started_at = now(),
           lease_expires_at = now() + make_interval(secs => $2)
     -- by primary key, whatever the planner guesses of LIMIT $3
     WHERE a.id = ANY (ARRAY(SELECT id FROM next))
    RETURNING a.id, a.fen, a.num_moves_to_return, a.time_limit, a.depth_limit,
              a.attempts, a.max_attempts, a.priority, a.created_at"""


def _record_done(first: int) -> str:
    """Results for many rows, each fenced by its own claim token; $1 is the worker id,
    the four arrays (ids, attempts, results, engines) start at `$first`."""
    ids, attempts, results, engines = (f"${first + offset}" for offset in range(4))
    return f"""
    UPDATE analyses AS a
       SET status = 'done', result = done.result::jsonb, engine = done.engine,
           error = NULL, finished_at = now(), lease_expires_at = NULL
      FROM unnest({ids}::uuid[], {attempts}::integer[], {results}::text[], {engines}::text[])
           AS done(id, attempt, result, engine)
     WHERE a.id = ANY ({ids}::uuid[])  -- by primary key, however many running rows
       AND a.id = done.id AND a.status = 'running' AND a.worker_id = $1
       AND a.attempts = done.attempt
    RETURNING a.id"""


CLAIM = f"WITH {_NEXT} {_TAKE}"

FINISH = _record_done(first=2)

# A worker's usual turn: the results its slots have ready and claims for the slots that
# ask, in one statement (one round trip, one commit). The rows finished are running, the
# rows claimed are queued: the two updates never touch the same row.
FINISH_AND_CLAIM = f"""
    WITH done AS ({_record_done(first=4)}
    ),{_NEXT},
    claimed AS ({_TAKE}
    )
    SELECT true AS claimed, * FROM claimed
    UNION ALL
    SELECT false, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM done
    """


@dataclass(frozen=True)
class Outcome:
    """A finished analysis waiting to be written."""

    job: ClaimedJob
    result: Sequence[ResultLine]
    engine_name: str


@dataclass(frozen=True)
class Exchanged:
    """What one exchange did: rows claimed (in claim order) and results recorded."""

    claimed: list[ClaimedJob]
    finished: set[uuid.UUID]
    """The outcomes' rows this worker could still finish (the others were taken back)."""


@errors.translated
async def exchange(
    pool: asyncpg.Pool,
    worker_id: str,
    lease_seconds: float,
    *,
    claim: int,
    outcomes: Sequence[Outcome] = (),
) -> Exchanged:
    """Record `outcomes` and take up to `claim` due queued rows for `worker_id`, in one
    statement; the rows come highest priority first, then oldest.

    The worker's hot path: one round trip, a prepared statement, no ORM."""
    if not outcomes:
        if claim <= 0:
            return Exchanged([], set())
        rows = await pool.fetch(CLAIM, worker_id, lease_seconds, claim)
        return Exchanged(_claimed(rows), set())
    arrays = (
        [outcome.job.id for outcome in outcomes],
        [outcome.job.attempts for outcome in outcomes],
        [json.dumps([line.to_json() for line in outcome.result]) for outcome in outcomes],
        [outcome.engine_name for outcome in outcomes],
    )
    if claim <= 0:
        rows = await pool.fetch(FINISH, worker_id, *arrays)
        return Exchanged([], {row["id"] for row in rows})
    rows = await pool.fetch(FINISH_AND_CLAIM, worker_id, lease_seconds, claim, *arrays)
    return Exchanged(
        _claimed([row for row in rows if row["claimed"]]),
        {row["id"] for row in rows if not row["claimed"]},
    )


def _claimed(rows: list[asyncpg.Record]) -> list[ClaimedJob]:
    rows.sort(key=lambda row: (-row["priority"], row["created_at"]))
    return [
        ClaimedJob(
            id=row["id"],
            fen=row["fen"],
            num_moves_to_return=row["num_moves_to_return"],
            time_limit=row["time_limit"],
            depth_limit=row["depth_limit"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
        )
        for row in rows
    ]


async def claim_next(pool: asyncpg.Pool, worker_id: str, lease_seconds: float) -> ClaimedJob | None:
    """Take the next due queued row for `worker_id`, or None when none is due."""
    claimed = (await exchange(pool, worker_id, lease_seconds, claim=1)).claimed
    return claimed[0] if claimed else None


async def finish(
    pool: asyncpg.Pool,
    job: ClaimedJob,
    worker_id: str,
    result: Sequence[ResultLine],
    engine_name: str,
) -> bool:
    """Record one result; False when the row is no longer this claim's to finish."""
    outcomes = [Outcome(job, result, engine_name)]
    return job.id in (await exchange(pool, worker_id, 0, claim=0, outcomes=outcomes)).finished


COUNT_QUEUED = text("SELECT count(*) FROM analyses WHERE status = 'queued'")


@errors.translated
async def count_queued(engine: AsyncEngine) -> int:
    """How many rows wait in the queue (over the partial claim index)."""
    async with engine.connect() as connection:
        return int((await connection.execute(COUNT_QUEUED)).scalar_one())


NEXT_DUE = text(
    """
    SELECT extract(epoch FROM min(run_after) - now()) AS seconds
      FROM analyses WHERE status = 'queued'
    """
)


@errors.translated
async def next_due_in(engine: AsyncEngine) -> float | None:
    """Seconds until the earliest queued row may be claimed (≤ 0: now); None if none."""
    async with engine.connect() as connection:
        seconds = (await connection.execute(NEXT_DUE)).scalar_one()
    return None if seconds is None else float(seconds)


async def _fenced(
    engine: AsyncEngine, statement: str, job: ClaimedJob, worker_id: str, **params: object
) -> str | None:
    """Run a fenced transition; the row's new status, or None when it is no longer ours."""
    async with engine.begin() as connection:
        status = (
            await connection.execute(
                text(statement),
                {"id": job.id, "worker_id": worker_id, "attempt": job.attempts, **params},
            )
        ).scalar_one_or_none()
    return None if status is None else str(status)


FAIL = f"""
    UPDATE analyses
       SET status = 'failed', error = :error, engine = coalesce(:engine_name, engine),
           finished_at = now(), lease_expires_at = NULL
     WHERE {FENCE}
    RETURNING status
    """


@errors.translated
async def fail(
    engine: AsyncEngine,
    job: ClaimedJob,
    worker_id: str,
    error: str,
    engine_name: str | None = None,
) -> bool:
    """Record that the analysis cannot be done; False when the row is no longer ours."""
    return (
        await _fenced(engine, FAIL, job, worker_id, error=error, engine_name=engine_name)
        is not None
    )


RETRY = f"""
    UPDATE analyses
       SET status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'canceled'
                         WHEN attempts < max_attempts THEN 'queued'
                         ELSE 'failed' END::analysis_status,
           error = CASE WHEN attempts < max_attempts THEN :error
                        ELSE :error || ' (gave up after ' || attempts || ' attempts)' END,
           engine = coalesce(:engine_name, engine),
           run_after = now() + make_interval(secs => {BACKOFF_SECONDS}),
           finished_at = CASE WHEN cancel_requested_at IS NOT NULL OR attempts >= max_attempts
                              THEN now() END,
           worker_id = NULL,
           lease_expires_at = NULL
     WHERE {FENCE}
    RETURNING status
    """


@errors.translated
async def retry(
    engine: AsyncEngine,
    job: ClaimedJob,
    worker_id: str,
    error: str,
    backoff: Backoff,
    engine_name: str | None = None,
) -> AnalysisStatus | None:
    """Put the row back in the queue after a backoff, or fail it once its attempts are
    used up; the new status, or None when the row is no longer ours."""
    status = await _fenced(
        engine, RETRY, job, worker_id, error=error, engine_name=engine_name, **backoff.params
    )
    return None if status is None else AnalysisStatus(status)


RELEASE = f"""
    UPDATE analyses
       SET status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'canceled'
                         ELSE 'queued' END::analysis_status,
           -- a worker that stops is not the row's fault: the claim does not count
           attempts = attempts - 1,
           run_after = now(),
           finished_at = CASE WHEN cancel_requested_at IS NOT NULL THEN now() END,
           worker_id = NULL,
           lease_expires_at = NULL
     WHERE {FENCE}
    RETURNING status
    """


@errors.translated
async def release(engine: AsyncEngine, job: ClaimedJob, worker_id: str) -> bool:
    """Give an unfinished row straight back to the queue (the worker is stopping)."""
    return await _fenced(engine, RELEASE, job, worker_id) is not None


MARK_CANCELED = f"""
    UPDATE analyses
       SET status = 'canceled', finished_at = now(), lease_expires_at = NULL
     WHERE {FENCE}
    RETURNING status
    """


@errors.translated
async def mark_canceled(engine: AsyncEngine, job: ClaimedJob, worker_id: str) -> bool:
    """Record that the worker stopped a row whose cancellation was requested."""
    return await _fenced(engine, MARK_CANCELED, job, worker_id) is not None


RENEW_LEASES = text(
    """
    UPDATE analyses
       SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
     WHERE id = ANY(:ids) AND status = 'running' AND worker_id = :worker_id
    RETURNING id, cancel_requested_at IS NOT NULL AS cancel_requested
    """
)


@errors.translated
async def renew_leases(
    engine: AsyncEngine, worker_id: str, ids: Sequence[uuid.UUID], lease_seconds: float
) -> list[Lease]:
    """Extend the leases of the rows this worker runs; the ones it still holds."""
    if not ids:
        return []
    async with engine.begin() as connection:
        rows = await connection.execute(
            RENEW_LEASES,
            {"ids": list(ids), "worker_id": worker_id, "lease_seconds": lease_seconds},
        )
        return [Lease(id=row.id, cancel_requested=row.cancel_requested) for row in rows]


REQUEUE_EXPIRED = text(
    f"""
    WITH expired AS (
        -- running rows whose worker stopped renewing the lease; rows another sweeper
        -- or a finishing worker holds are skipped, and FOR UPDATE re-checks the
        -- condition on the newest version, so a row finished meanwhile is left alone
        SELECT id FROM analyses
         WHERE status = 'running' AND lease_expires_at < now()
         ORDER BY lease_expires_at
         LIMIT :batch
           FOR UPDATE SKIP LOCKED
    )
    UPDATE analyses AS a
       SET status = CASE WHEN a.cancel_requested_at IS NOT NULL THEN 'canceled'
                         WHEN a.attempts < a.max_attempts THEN 'queued'
                         ELSE 'failed' END::analysis_status,
           error = CASE WHEN a.cancel_requested_at IS NOT NULL THEN a.error
                        WHEN a.attempts < a.max_attempts THEN 'worker lost (lease expired)'
                        ELSE 'worker lost (lease expired) on each of '
                             || a.attempts || ' attempts' END,
           run_after = now() + make_interval(secs => {BACKOFF_SECONDS}),
           finished_at = CASE WHEN a.cancel_requested_at IS NOT NULL
                                OR a.attempts >= a.max_attempts THEN now() END,
           worker_id = NULL,
           lease_expires_at = NULL
      FROM expired
     WHERE a.id = expired.id
    RETURNING a.id, a.status
    """
)


@errors.translated
async def requeue_expired(
    engine: AsyncEngine, backoff: Backoff, batch: int = 100
) -> dict[uuid.UUID, AnalysisStatus]:
    """Take back rows whose lease expired: queued again, or failed once attempts are used
    up (canceled if cancellation was asked); each row's new status."""
    async with engine.begin() as connection:
        rows = await connection.execute(REQUEUE_EXPIRED, {"batch": batch, **backoff.params})
        return {row.id: AnalysisStatus(row.status) for row in rows}


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
