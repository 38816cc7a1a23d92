"""Games: a game's request, its positions, and where it stands.

A game is stored with its moves, and each of its positions (the start, and the one after
each move) as an analysis of its own, batch work of its tenant, through the position
cache and shared runs (`db.submissions`): every slot of every worker can take one, a
position analysed before costs nothing, and a position two games share is searched once.
The game and its positions are stored in one transaction: all or nothing, so a refused
position (a quota) stores nothing of the game.

A game's status and progress are read from its positions, never stored: no statement
that ends an analysis has a game row to update. CANCELED once canceled; else DONE when
every position is done; FAILED when every position has ended and one failed; RUNNING
once a position has started or ended; QUEUED before.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import asyncpg

from db import cancellation, errors, submissions, tenants
from db.models import AnalysisKind, AnalysisStatus, ResultLine
from db.submissions import NewAnalysis, Refusal
from db.tenants import Tenant


@dataclass(frozen=True)
class NewGame:
    """A validated game, ready to store."""

    headers: list[tuple[str, str]]
    initial_fen: str
    moves: list[dict[str, Any]]
    """Each move played: {uci, san, fen_before}."""
    positions: list[NewAnalysis]
    """The analysis of each position, in order: the start, then after each move; none
    for a game without moves (DONE at once)."""
    num_moves_to_return: int
    time_limit: float
    depth_limit: int | None
    nodes_limit: int | None
    opening: tuple[str, str] | None = None
    """(ECO, name) of the last named position the game reaches."""


@dataclass(frozen=True)
class Position:
    """One position of a game as its analysis stands."""

    ply: int
    id: uuid.UUID
    status: AnalysisStatus
    result: list[ResultLine] | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Game:
    """A stored game and where its positions stand."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    headers: list[tuple[str, str]]
    initial_fen: str
    moves: list[dict[str, Any]]
    num_moves_to_return: int
    time_limit: float
    depth_limit: int | None
    nodes_limit: int | None
    opening: tuple[str, str] | None
    created_at: datetime
    canceled_at: datetime | None
    positions: list[Position] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(1 for p in self.positions if p.status is AnalysisStatus.DONE)

    @property
    def status(self) -> AnalysisStatus:
        if self.canceled_at is not None:
            return AnalysisStatus.CANCELED
        statuses = [p.status for p in self.positions]
        if all(status is AnalysisStatus.DONE for status in statuses):
            return AnalysisStatus.DONE
        if all(status.is_terminal for status in statuses):
            failed = AnalysisStatus.FAILED in statuses
            return AnalysisStatus.FAILED if failed else AnalysisStatus.CANCELED
        if any(s is not AnalysisStatus.QUEUED for s in statuses):
            return AnalysisStatus.RUNNING
        return AnalysisStatus.QUEUED

    @property
    def started_at(self) -> datetime | None:
        started = [p.started_at or p.finished_at for p in self.positions]
        return min((moment for moment in started if moment is not None), default=None)

    @property
    def finished_at(self) -> datetime | None:
        if self.canceled_at is not None:
            return self.canceled_at
        if not self.status.is_terminal:
            return None
        finished = (p.finished_at for p in self.positions if p.finished_at)
        return max(finished, default=self.created_at)  # a game without moves: at once

    @property
    def error(self) -> str | None:
        failed = [p for p in self.positions if p.status is AnalysisStatus.FAILED]
        if not failed:
            return None
        return f"position {failed[0].ply} failed: {failed[0].error}"


INSERT_GAME = """
    INSERT INTO games (tenant_id, headers, initial_fen, moves, num_moves_to_return,
                       time_limit, depth_limit, nodes_limit, opening_eco, opening_name)
    VALUES ($1, $2::jsonb, $3, $4::jsonb, $5, $6, $7, $8, $9, $10)
    RETURNING *
    """

READ_GAMES = """
    SELECT * FROM games WHERE id = ANY ($1::uuid[]) AND ($2 OR tenant_id = ANY ($3::uuid[]))
    """

READ_POSITIONS = """
    SELECT game_id, ply, id, status, result, error, started_at, finished_at
      FROM analyses WHERE game_id = ANY ($1::uuid[])
     ORDER BY game_id, ply
    """

NEWEST = """
    -- $1 the tenant (NULL: everyone's), $2 rows, $3/$4 the position after which to go on
    SELECT * FROM games
     WHERE ($1::uuid IS NULL OR tenant_id = $1)
       AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
     ORDER BY created_at DESC, id DESC
     LIMIT $2
    """

CANCEL = """
    UPDATE games SET canceled_at = coalesce(canceled_at, now()) WHERE id = $1
    RETURNING id
    """

OPEN_POSITIONS = """
    SELECT id FROM analyses WHERE game_id = $1 AND status IN ('queued', 'running')
    """


@errors.translated
async def submit(
    pool: asyncpg.Pool, game: NewGame, *, tenant: Tenant, max_queued: int
) -> Game | Refusal:
    """Store `game` and queue its positions (as batch work), or store nothing and say
    why (the first position refused: a quota, the queue's cap)."""
    try:
        game_id = await _store(pool, game, tenant, max_queued)
    except _RefusedError as refused:
        return refused.refusal
    found = await get(pool, game_id, viewer=None)
    assert found is not None
    return found


async def _store(pool: asyncpg.Pool, game: NewGame, tenant: Tenant, max_queued: int) -> uuid.UUID:
    async with pool.acquire() as connection, connection.transaction():
        await submissions.take_share_locks(connection, [p.share_key for p in game.positions])
        row = await connection.fetchrow(
            INSERT_GAME,
            tenant.id,
            json.dumps(game.headers),
            game.initial_fen,
            json.dumps(game.moves),
            game.num_moves_to_return,
            game.time_limit,
            game.depth_limit,
            game.nodes_limit,
            None if game.opening is None else game.opening[0],
            None if game.opening is None else game.opening[1],
        )
        for ply, position in enumerate(game.positions):
            stored = await submissions.enqueue(
                connection,
                replace(position, game_id=row["id"], ply=ply),
                tenant=tenant,
                max_queued=max_queued,
                kind=AnalysisKind.BATCH,
            )
            if isinstance(stored, Refusal):
                raise _RefusedError(stored)  # rolls the game back
    game_id: uuid.UUID = row["id"]
    return game_id


class _RefusedError(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


def _owners(viewer: Tenant | None) -> tuple[bool, list[uuid.UUID]]:
    """Whether `viewer` sees every game, else whose: its own and the anonymous tenant's."""
    if viewer is None or viewer.is_admin:
        return True, []
    return False, [viewer.id, tenants.ANONYMOUS_ID]


@errors.translated
async def get_many(
    pool: asyncpg.Pool, ids: Sequence[uuid.UUID], *, viewer: Tenant | None
) -> list[Game]:
    """The games with these ids that `viewer` may see, with their positions."""
    everyone, owners = _owners(viewer)
    async with pool.acquire() as connection:
        rows = await connection.fetch(READ_GAMES, list(ids), everyone, owners)
        return await _with_positions(connection, rows)


async def get(pool: asyncpg.Pool, game_id: uuid.UUID, *, viewer: Tenant | None) -> Game | None:
    """The game with `game_id`, or None (also when `viewer` may not see it)."""
    found = await get_many(pool, [game_id], viewer=viewer)
    return found[0] if found else None


@errors.translated
async def newest(
    pool: asyncpg.Pool,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    *,
    tenant_id: uuid.UUID | None,
) -> list[Game]:
    """A tenant's games (everyone's for None), newest first, after a keyset position."""
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            NEWEST,
            tenant_id,
            limit,
            None if after is None else after[0],
            None if after is None else after[1],
        )
        return await _with_positions(connection, rows)


async def _with_positions(connection: Any, rows: Sequence[asyncpg.Record]) -> list[Game]:
    if not rows:
        return []
    positions: dict[uuid.UUID, list[Position]] = {row["id"]: [] for row in rows}
    for found in await connection.fetch(READ_POSITIONS, list(positions)):
        result = found["result"]
        if isinstance(result, str):
            result = json.loads(result)
        positions[found["game_id"]].append(
            Position(
                ply=found["ply"],
                id=found["id"],
                status=AnalysisStatus(found["status"]),
                result=None if result is None else [ResultLine.from_json(x) for x in result],
                error=found["error"],
                started_at=found["started_at"],
                finished_at=found["finished_at"],
            )
        )
    return [_game(row, positions[row["id"]]) for row in rows]


def _game(row: asyncpg.Record, positions: list[Position]) -> Game:
    def loaded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    eco, name = row["opening_eco"], row["opening_name"]
    return Game(
        id=row["id"],
        tenant_id=row["tenant_id"],
        headers=[(str(k), str(v)) for k, v in loaded(row["headers"])],
        initial_fen=row["initial_fen"],
        moves=loaded(row["moves"]),
        num_moves_to_return=row["num_moves_to_return"],
        time_limit=row["time_limit"],
        depth_limit=row["depth_limit"],
        nodes_limit=row["nodes_limit"],
        opening=None if eco is None or name is None else (eco, name),
        created_at=row["created_at"],
        canceled_at=row["canceled_at"],
        positions=positions,
    )


async def cancel(
    engine: Any, pool: asyncpg.Pool, game_id: uuid.UUID, *, viewer: Tenant
) -> Game | None:
    """Cancel a game: it is CANCELED at once, its queued positions canceled, its running
    ones stopped (a position another request shares goes on for it). A finished game is
    left as it is. None for an unknown id or one `viewer` may not see."""
    game = await get(pool, game_id, viewer=viewer)
    if game is None:
        return None
    if game.status.is_terminal:
        return game
    await pool.fetchval(CANCEL, game_id)
    for row in await pool.fetch(OPEN_POSITIONS, game_id):
        await cancellation.request_cancel(engine, row["id"], viewer=None)
    return await get(pool, game_id, viewer=viewer)
