"""The API's statements: storing a request, reading rows, asking for a cancellation.

Every row belongs to a tenant (`db.tenants`). A submission is checked against the
queue's cap and its tenant's quotas, charged, and given its place in the line, all in
the statement that stores it:

- engine seconds: a token bucket per tenant, holding up to its hourly quota and
  refilled at that rate; a submission is charged its time limit (`MIN_CHARGE_SECONDS`
  when it is answered without an engine) and refused while the bucket holds less. What
  an analysis did not use is given back when it ends (`db.claims`) or is canceled
  before it ran (`request_cancel`). A row changed by hand in psql settles nothing.
- turns: start-time fair queuing on a virtual clock in seconds. A tenant's submission
  takes the turn `max(its clock, now) + charge / weight` and moves the clock there;
  workers claim the smallest turn first. A tenant with a backlog has turns far ahead,
  a newcomer's start at now, so it waits about one analysis per slot; weight w gets w
  times the share. Interactive and batch work keep separate clocks, so a tenant's
  single positions do not wait behind its own batch backlog.

A tenant's submissions take turns on its row (its lock), so its quotas hold exactly
however many arrive at once.

Triggers in the migrations send the notifications: a row stored queued wakes the
workers, a row reaching done, failed or canceled wakes its subscribers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import asyncpg
from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors, tenants
from db.models import Analysis, AnalysisKind, AnalysisStatus, ResultLine
from db.session import session
from db.tenants import Tenant


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
    nodes_limit: int | None = None
    """Nodes the engine may search; None for no such limit."""
    position_key: str | None = None
    """The normalised position (`board.epd()`): the position cache's key. None: the
    request neither reads nor feeds the cache, nor shares a run."""
    fresh: bool = False
    """A search of its own: the cache is not read and no run is shared (its result
    still feeds the cache)."""
    game_id: uuid.UUID | None = None
    """The game it is a position of, if any."""
    ply: int | None = None
    """Which position of its game: 0 the start, n after the n-th move."""

    @property
    def share_key(self) -> str | None:
        """What a run must match for this request to join it: the position and every
        limit. None when the request must have a run of its own."""
        if self.fresh or self.position_key is None or self.finished_result is not None:
            return None
        return (
            f"{self.position_key}|{self.num_moves_to_return}|{self.time_limit!r}"
            f"|{self.depth_limit}|{self.nodes_limit}"
        )


@dataclass(frozen=True)
class Refusal:
    """Why a submission was not stored; nothing was stored or charged."""

    reason: Literal["queue_full", "quota_exceeded", "rate_limited"]
    """`queue_full`: the whole queue holds its cap; `quota_exceeded`: the tenant's queued
    work is at its quota; `rate_limited`: its engine seconds are used up for now."""
    retry_after: float
    """Seconds after which the same submission may be accepted. `rate_limited`: exact,
    when the bucket holds the charge again. `quota_exceeded` and `queue_full`: an
    estimate, the time limit of the queued analysis (the tenant's, or anyone's) that a
    worker takes next, at least a second."""
    detail: str
    """What was found, for people: "20 analyses queued, the quota is 20"."""


ENQUEUE = """
    -- $1..$5 the request; $6 the queue's cap; $7 the tenant; $8, $9, $10 its quotas
    -- (max queued, engine seconds per hour, weight; NULL: no limit); $11 the kind
    -- (0 interactive, 1 batch); $12 the charge of a run; $13 the result when it is
    -- known without an engine (stored done at once), else NULL; $14 the node limit;
    -- $15 the position's key; $16 the share key (NULL: a run of its own, no cache);
    -- $17 the charge of an answer without a run of its own; $18, $19 the game and the
    -- position in it (NULL for a single position).
    WITH cache AS (
        -- the cache's answer: at least as many lines, searched at least as deep, as many
        -- nodes or as long as this request would search
        SELECT result, engine FROM position_cache
         WHERE $16::text IS NOT NULL AND $13::text IS NULL
           AND position_key = $15 AND lines >= $2
           AND (depth >= $4 OR nodes >= $14 OR seconds >= $3)
         ORDER BY lines, depth DESC
         LIMIT 1
    ),
    known AS (
        SELECT coalesce($13::jsonb, (
                   -- the cache's lines, cut to the number asked for
                   SELECT jsonb_agg(line ORDER BY n)
                     FROM cache, jsonb_array_elements(cache.result)
                          WITH ORDINALITY AS l(line, n)
                    WHERE n <= $2)) AS result,
               EXISTS (SELECT 1 FROM cache) AS cached,
               (SELECT engine FROM cache) AS engine
    ),
    seen AS (
        -- a run of the same position and limits, as the statement's snapshot has it
        SELECT id FROM analyses
         WHERE share_key = $16 AND NOT follows AND status IN ('queued', 'running')
           AND cancel_requested_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM cache) AND $13::text IS NULL
    ),
    joined AS (
        -- that run, locked and read again: one that ended meanwhile is not joined (its
        -- end copies its status to every row that joined it before). A share lock: it
        -- waits for the statement ending the run, and makes that statement wait, but
        -- writes no new version of the row, so a submission inserting a run of the same
        -- search finds it already there without waiting for this one.
        SELECT coalesce(a.run_id, a.id) AS run_id, a.status, a.started_at
          FROM analyses AS a
         WHERE a.id IN (SELECT id FROM seen)
           AND a.status IN ('queued', 'running') AND a.cancel_requested_at IS NULL
           FOR SHARE
    ),
    way AS (
        SELECT CASE WHEN (SELECT result FROM known) IS NOT NULL THEN 'known'
                    WHEN EXISTS (SELECT 1 FROM joined) THEN 'join'
                    -- the run ended between the snapshot and its lock: try again
                    WHEN EXISTS (SELECT 1 FROM seen) THEN 'again'
                    ELSE 'run' END AS way
    ),
    charge AS (
        SELECT way, CASE WHEN way = 'run' THEN $12::float8 ELSE $17::float8 END AS seconds,
               way IN ('run', 'join') AS queues
          FROM way WHERE way <> 'again'
    ),
    tenant AS (
        -- Checks, charges and gives the turn on the tenant's row, whose lock serializes
        -- the tenant's submissions. No row when a check fails: nothing is charged, and
        -- the insert below inserts nothing.
        UPDATE api_keys AS k
           SET -- the bucket: refilled at $9/3600 a second up to $9, less the charge
               budget_seconds = CASE WHEN $9::float8 IS NOT NULL THEN
                   least($9, coalesce(k.budget_seconds + $9 / 3600 * greatest(0,
                       extract(epoch FROM now() - k.budget_at)), $9)) - charge.seconds END,
               budget_at = greatest(k.budget_at, now()),
               -- start-time fair queuing: from the later of its last turn and now, a
               -- run moves the tenant's clock on by its charge over its weight
               next_turn = CASE WHEN charge.way = 'run' AND $11 = 0
                   THEN greatest(k.next_turn, extract(epoch FROM now())) + $12 / $10
                   ELSE k.next_turn END,
               next_batch_turn = CASE WHEN charge.way = 'run' AND $11 <> 0
                   THEN greatest(k.next_batch_turn, extract(epoch FROM now())) + $12 / $10
                   ELSE k.next_batch_turn END,
               queued_total = k.queued_total + charge.queues::integer,
               -- the anonymous tenant's quota is the API's setting: the row follows it,
               -- so that the worker's refunds know the bucket's capacity
               engine_seconds_per_hour = CASE
                   WHEN k.id = '00000000-0000-0000-0000-000000000000' THEN $9
                   ELSE k.engine_seconds_per_hour END
          FROM charge
         WHERE k.id = $7
           -- the queue's cap (a new run only): counts at most $6 queued rows over the
           -- claim index
           AND (charge.way <> 'run' OR $6 > (SELECT count(*) FROM (
                   SELECT 1 FROM analyses WHERE status = 'queued' AND NOT follows
                    LIMIT $6) AS queued))
           -- the tenant's queued work, over its partial index. The count reads the
           -- statement's snapshot; after waiting for another submission's lock, this
           -- row is the newer version, and the growth of `queued_total` since the
           -- snapshot adds the rows queued meanwhile, which the count cannot see.
           AND (NOT charge.queues OR $8::integer IS NULL OR $8 > (
                   SELECT count(*) FROM (
                       SELECT 1 FROM analyses
                        WHERE tenant_id = $7 AND status = 'queued' LIMIT $8) AS queued)
                   + k.queued_total - (SELECT queued_total FROM api_keys WHERE id = $7))
           -- the engine seconds: enough in the bucket for the charge
           AND ($9::float8 IS NULL OR charge.seconds <= least($9, coalesce(k.budget_seconds
                   + $9 / 3600 * greatest(0, extract(epoch FROM now() - k.budget_at)), $9)))
        RETURNING CASE WHEN charge.way <> 'run' THEN extract(epoch FROM now())
                       WHEN $11 = 0 THEN k.next_turn
                       ELSE k.next_batch_turn END AS turn,
                  charge.way
    )
    INSERT INTO analyses (fen, num_moves_to_return, time_limit, depth_limit, nodes_limit,
                          max_attempts, tenant_id, kind, turn, status, result, finished_at,
                          started_at, engine, cached, position_key, share_key, run_id,
                          follows, game_id, ply)
    SELECT $1, $2, $3, $4, $14, $5, $7, $11, tenant.turn,
           CASE tenant.way WHEN 'known' THEN 'done'::analysis_status
                           WHEN 'join' THEN joined.status
                           ELSE 'queued'::analysis_status END,
           known.result,
           CASE WHEN tenant.way = 'known' THEN now() END,
           joined.started_at, known.engine, known.cached AND tenant.way = 'known',
           $15, $16, joined.run_id, tenant.way = 'join', $18, $19
      FROM tenant CROSS JOIN known LEFT JOIN joined ON true
    RETURNING *
    """

REFUSED = """
    -- $1 the tenant; $2, $3 its quotas (max queued, engine seconds per hour);
    -- $4 the queue's cap. What the refused submission found, read again.
    SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1) AS tenant_exists,
           (SELECT count(*) FROM (
                SELECT 1 FROM analyses WHERE tenant_id = $1 AND status = 'queued'
                 LIMIT coalesce($2::integer, 0)) AS queued) AS tenant_queued,
           (SELECT time_limit FROM analyses WHERE tenant_id = $1 AND status = 'queued'
             ORDER BY turn LIMIT 1) AS tenant_next_time_limit,
           (SELECT least($3::float8, coalesce(budget_seconds + $3 / 3600 * greatest(0,
                       extract(epoch FROM now() - budget_at)), $3))
              FROM api_keys WHERE id = $1) AS available,
           (SELECT count(*) FROM (
                SELECT 1 FROM analyses WHERE status = 'queued' LIMIT $4) AS queued) AS queued,
           (SELECT time_limit FROM analyses WHERE status = 'queued'
             ORDER BY turn LIMIT 1) AS next_time_limit
    """

ATTEMPTS = 3
"""Submissions tried when the checks that refused one pass on a second look (the queue
moved meanwhile) before it is refused as `queue_full`."""

Connections = Any
"""Where a plain asyncpg statement runs: the API's pool, or one connection."""


@errors.translated
async def enqueue(
    connections: Connections,
    request: NewAnalysis,
    *,
    tenant: Tenant,
    max_queued: int,
    kind: int = AnalysisKind.INTERACTIVE,
) -> Analysis | Refusal:
    """Store `tenant`'s request, queued, or done at once when its result is already known.

    Checked and charged in the same statement, on the tenant's row: the queue's cap
    (`max_queued` rows waiting in all), the tenant's queued-work quota, and its engine
    seconds (the request's time limit; `tenants.MIN_CHARGE_SECONDS` for a request
    answered without an engine, which is checked against the engine seconds only).
    `tenant.quotas` are the ones applied: for the anonymous tenant, the API's settings.
    Its turn puts it after the tenant's own queued work of the same kind, and among
    other tenants' work by fair queuing (see `db.claims`).

    One statement, one round trip; a refusal costs a second read, which says why.
    """
    arguments = _arguments(request, tenant, max_queued, kind)
    if isinstance(connections, asyncpg.Pool):
        async with connections.acquire() as connection:
            return await _enqueue(connection, tenant, max_queued, arguments)
    return await _enqueue(connections, tenant, max_queued, arguments)


def _arguments(
    request: NewAnalysis, tenant: Tenant, max_queued: int, kind: int
) -> tuple[object, ...]:
    if request.finished_result is None:
        charge, result = request.time_limit, None
    else:
        charge = tenants.MIN_CHARGE_SECONDS
        result = json.dumps([line.to_json() for line in request.finished_result])
    return (
        request.fen,
        request.num_moves_to_return,
        request.time_limit,
        request.depth_limit,
        request.max_attempts,
        max_queued,
        tenant.id,
        tenant.quotas.max_queued,
        tenant.quotas.engine_seconds_per_hour,
        tenant.quotas.weight,
        int(AnalysisKind(kind)),  # ValueError for a kind that is neither
        charge,
        result,
        request.nodes_limit,
        request.position_key,
        request.share_key,
        tenants.MIN_CHARGE_SECONDS,
        request.game_id,
        request.ply,
    )


async def _enqueue(
    connection: Any, tenant: Tenant, max_queued: int, arguments: tuple[object, ...]
) -> Analysis | Refusal:
    share_key = arguments[15]
    for _ in range(ATTEMPTS):
        record = await _store(connection, share_key, arguments)
        if record is not None:
            return analysis_from(record)
        refusal = await _refusal(connection, tenant, max_queued, arguments)
        if refusal is not None:
            return refusal
    return Refusal("queue_full", 1.0, "the queue is too busy to take it now")


SHARE = """
    -- $1 the share keys, sorted: each search's lock, taken in that order
    SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) FROM unnest($1::text[]) AS key
    """


async def take_share_locks(connection: Any, share_keys: Sequence[str | None]) -> None:
    """Lock the searches of `share_keys` for the rest of the caller's transaction.

    Submissions of one search take turns: the one that starts a run commits before the
    next reads the queue, which then joins the run instead of starting a second one.
    (A unique index alone would make the second wait for the first while holding its
    tenant's row, which the statement ending the first run may need: a deadlock.)
    Locks are taken in one order, so that submissions taking several (a game's
    positions) never wait for each other in a circle."""
    keys = sorted({key for key in share_keys if key is not None})
    if keys:
        await connection.execute(SHARE, keys)


async def _store(connection: Any, share_key: Any, arguments: tuple[object, ...]) -> Any:
    """One try at the submission's statement; None when it stored nothing."""
    if share_key is None or connection.is_in_transaction():
        # No run to share, or the caller's transaction holds the share locks (a game's
        # positions, `db.games`).
        return await errors.fetchrow(connection, ENQUEUE, *arguments)
    async with connection.transaction():
        await take_share_locks(connection, [share_key])
        return await errors.fetchrow(connection, ENQUEUE, *arguments)


async def _refusal(
    connection: Any, tenant: Tenant, max_queued: int, arguments: tuple[object, ...]
) -> Refusal | None:
    """Which check refused the submission, read again: the tenant's queued work, its
    engine seconds, then the queue's cap. None when they all pass now.

    The wait for queued work is the time limit of the tenant's analysis that a worker
    takes next (of the whole queue's, for `queue_full`), at least a second: about when
    a slot frees a place. The wait for engine seconds is exact: when the bucket, refilled
    at the quota's hourly rate, holds the charge.
    """
    quotas = tenant.quotas
    charge = cast(float, arguments[11])
    finished_at_once = arguments[12] is not None
    found = await errors.fetchrow(
        connection,
        REFUSED,
        tenant.id,
        quotas.max_queued,
        quotas.engine_seconds_per_hour,
        max_queued,
    )
    if not found["tenant_exists"]:
        raise LookupError(f"no tenant with id {tenant.id}")
    if (
        not finished_at_once
        and quotas.max_queued is not None
        and found["tenant_queued"] >= quotas.max_queued
    ):
        return Refusal(
            "quota_exceeded",
            max(1.0, found["tenant_next_time_limit"] or 1.0),
            f"{found['tenant_queued']} analyses queued, the quota is {quotas.max_queued}",
        )
    cap = quotas.engine_seconds_per_hour
    available = found["available"]
    if cap is not None and available is not None and available < charge:
        detail = (
            f"{charge:g} engine seconds asked, {max(available, 0.0):.2f} available"
            f" (the quota is {cap:g} an hour)"
        )
        if charge > cap:
            detail += f"; a time limit above {cap:g} s is never accepted"
        return Refusal("rate_limited", (charge - available) / (cap / 3600), detail)
    if not finished_at_once and found["queued"] >= max_queued:
        return Refusal(
            "queue_full",
            max(1.0, found["next_time_limit"] or 1.0),
            f"{found['queued']} analyses queued in all, the cap is {max_queued}",
        )
    return None


def analysis_from(record: asyncpg.Record) -> Analysis:
    """The model object of a row read over plain asyncpg (not attached to a session)."""
    values = dict(record)
    values["status"] = AnalysisStatus(values["status"])
    if isinstance(values["result"], str):  # plain asyncpg hands jsonb over as text
        values["result"] = json.loads(values["result"])
    return Analysis(**values)


def visible_to(viewer: Tenant | None) -> ColumnElement[bool]:
    """The rows `viewer` may see: all of them for None (the service itself) or an
    admin; else its own and the anonymous tenant's (whose ids are their capability)."""
    if viewer is None or viewer.is_admin:
        return true()
    return Analysis.tenant_id.in_([viewer.id, tenants.ANONYMOUS_ID])


@errors.translated
async def get(
    engine: AsyncEngine, analysis_id: uuid.UUID, *, viewer: Tenant | None = None
) -> Analysis | None:
    """The row with `analysis_id`, or None (also when `viewer` may not see it)."""
    async with session(engine) as db:
        row: Analysis | None = await db.scalar(
            select(Analysis).where(Analysis.id == analysis_id, visible_to(viewer))
        )
    return row


@errors.translated
async def get_many(
    engine: AsyncEngine, ids: Sequence[uuid.UUID], *, viewer: Tenant | None = None
) -> list[Analysis]:
    """The rows with these ids that exist and `viewer` may see, in one statement."""
    if not ids:
        return []
    async with session(engine) as db:
        return list(
            await db.scalars(select(Analysis).where(Analysis.id.in_(list(ids)), visible_to(viewer)))
        )
