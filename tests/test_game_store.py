"""Games in the database: stored with their positions in one transaction, their status
read from the positions, canceled with them."""

from __future__ import annotations

import asyncpg
import chess
from sqlalchemy.ext.asyncio import AsyncEngine

from db import claims, games, submissions, tenants
from db.models import Analysis, AnalysisKind, AnalysisStatus, ResultLine
from db.submissions import Refusal
from tests.rows import ANONYMOUS
from tests.test_position_cache import keyed

LINE = ResultLine(1, 20, None, pv=("e2e4",), pv_san=("e4",), depth=10)


def new_game(moves: list[str]) -> games.NewGame:
    board = chess.Board()
    played, positions = [], [keyed(board.fen())]
    for uci in moves:
        move = chess.Move.from_uci(uci)
        played.append({"uci": uci, "san": board.san(move), "fen_before": board.fen()})
        board.push(move)
        positions.append(keyed(board.fen()))
    return games.NewGame(
        headers=[("White", "A"), ("Black", "B")],
        initial_fen=chess.STARTING_FEN,
        moves=played,
        positions=positions,
        num_moves_to_return=1,
        time_limit=30.0,
        depth_limit=10,
        nodes_limit=None,
        opening=("C20", "King's Pawn Game"),
    )


async def finish_all(pool: asyncpg.Pool) -> int:
    count = 0
    while (job := await claims.claim_next(pool, "w", 30.0)) is not None:
        searched = claims.Searched(depth=10, nodes=100, seconds=0.1)
        outcome = claims.Outcome.of(job, "w", claims.Ending.DONE, result=[LINE], searched=searched)
        await claims.end(pool, outcome)
        count += 1
    return count


async def test_a_game_is_stored_with_a_position_per_ply(pool: asyncpg.Pool) -> None:
    stored = await games.submit(
        pool, new_game(["e2e4", "e7e5", "g1f3"]), tenant=ANONYMOUS, max_queued=1000
    )
    assert isinstance(stored, games.Game)
    assert stored.status is AnalysisStatus.QUEUED and stored.opening == ("C20", "King's Pawn Game")
    assert [p.ply for p in stored.positions] == [0, 1, 2, 3]
    assert stored.headers == [("White", "A"), ("Black", "B")]
    kinds = await pool.fetch("SELECT DISTINCT kind FROM analyses WHERE game_id = $1", stored.id)
    assert [row["kind"] for row in kinds] == [AnalysisKind.BATCH]

    assert await finish_all(pool) == 4
    done = await games.get(pool, stored.id, viewer=None)
    assert done is not None and done.status is AnalysisStatus.DONE and done.done == 4
    assert done.finished_at is not None and done.started_at is not None

    again = await games.submit(
        pool, new_game(["e2e4", "e7e5", "g1f3"]), tenant=ANONYMOUS, max_queued=1000
    )
    assert isinstance(again, games.Game) and again.status is AnalysisStatus.DONE, "from the cache"
    assert await finish_all(pool) == 0


async def test_a_refused_position_stores_nothing_of_the_game(pool: asyncpg.Pool) -> None:
    small, _ = await tenants.create(pool, "small", quotas=tenants.Quotas(max_queued=3))
    refused = await games.submit(
        pool, new_game(["e2e4", "e7e5", "g1f3", "b8c6"]), tenant=small, max_queued=1000
    )
    assert isinstance(refused, Refusal) and refused.reason == "quota_exceeded"
    assert await pool.fetchval("SELECT count(*) FROM games") == 0
    assert await pool.fetchval("SELECT count(*) FROM analyses") == 0


async def test_a_repeated_position_is_searched_once(pool: asyncpg.Pool) -> None:
    knights = ["g1f3", "g8f6", "f3g1", "f6g8", "g1f3"]
    stored = await games.submit(pool, new_game(knights), tenant=ANONYMOUS, max_queued=1000)
    assert isinstance(stored, games.Game)
    assert await finish_all(pool) == 4, "six positions, two of them seen before"
    done = await games.get(pool, stored.id, viewer=None)
    assert done is not None and done.status is AnalysisStatus.DONE


async def test_canceling_a_game_cancels_its_positions(
    pool: asyncpg.Pool, database: AsyncEngine
) -> None:
    stored = await games.submit(pool, new_game(["d2d4", "d7d5"]), tenant=ANONYMOUS, max_queued=1000)
    assert isinstance(stored, games.Game)
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    canceled = await games.cancel(database, pool, stored.id, viewer=ANONYMOUS)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
    statuses = {p.status for p in canceled.positions}
    assert statuses == {AnalysisStatus.CANCELED, AnalysisStatus.RUNNING}
    running = await pool.fetchval(
        "SELECT cancel_requested_at IS NOT NULL FROM analyses WHERE id = $1", job.id
    )
    assert running, "the running position's worker is asked to stop"


async def test_another_tenants_game_is_not_found(pool: asyncpg.Pool) -> None:
    owner, _ = await tenants.create(pool, "owner")
    other, _ = await tenants.create(pool, "other")
    stored = await games.submit(pool, new_game(["e2e4"]), tenant=owner, max_queued=1000)
    assert isinstance(stored, games.Game)
    assert await games.get(pool, stored.id, viewer=other) is None
    assert await games.get(pool, stored.id, viewer=owner) is not None
    assert [g.id for g in await games.newest(pool, 10, None, tenant_id=owner.id)] == [stored.id]
    assert await games.newest(pool, 10, None, tenant_id=other.id) == []


async def test_a_position_another_request_shares_goes_on_when_its_game_is_canceled(
    pool: asyncpg.Pool, database: AsyncEngine
) -> None:
    stored = await games.submit(pool, new_game(["c2c4"]), tenant=ANONYMOUS, max_queued=1000)
    assert isinstance(stored, games.Game)
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None and job.id == stored.positions[0].id, "the start, claimed first"
    board = chess.Board()
    single = await submissions.enqueue(pool, keyed(board.fen()), tenant=ANONYMOUS, max_queued=1000)
    assert isinstance(single, Analysis) and single.follows, "joins the game's search"
    canceled = await games.cancel(database, pool, stored.id, viewer=ANONYMOUS)
    assert canceled is not None and canceled.status is AnalysisStatus.CANCELED
    carried = await submissions.get(database, single.id)
    assert carried is not None and carried.status is AnalysisStatus.RUNNING
    assert carried.cancel_requested_at is None, "the search goes on for the other request"
    outcome = claims.Outcome.of(job, "w", claims.Ending.DONE, result=[LINE])
    assert await claims.end(pool, outcome) is AnalysisStatus.DONE
    done = await submissions.get(database, single.id)
    assert done is not None and done.status is AnalysisStatus.DONE
