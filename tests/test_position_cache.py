"""The position cache: an answer at once, with no engine time, when an earlier search of
the same position went at least as far with at least as many lines."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import asyncpg
import chess
import chess.engine
from sqlalchemy.ext.asyncio import AsyncEngine

from db import claims, submissions, tenants
from db.models import Analysis, AnalysisStatus, ResultLine
from engine import analysis
from engine.settings import EngineSettings
from tests.conftest import REFERENCE_FEN, WorkerFactory
from tests.rows import enqueue, request, store, wait_terminal

ITALIAN = "r1bqk1nr/pppp1ppp/2n5/2b1p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4"


def keyed(
    fen: str = ITALIAN,
    *,
    moves: int = 1,
    time_limit: float = 30.0,
    depth: int | None = 10,
    nodes: int | None = None,
    fresh: bool = False,
) -> submissions.NewAnalysis:
    """A request as the API makes it: with its position's key, so the cache is read."""
    return dataclasses.replace(
        request(fen, moves=moves, time_limit=time_limit, depth=depth),
        position_key=chess.Board(fen).epd(),
        nodes_limit=nodes,
        fresh=fresh,
    )


def line(rank: int, depth: int, move: str = "e2e4") -> ResultLine:
    return ResultLine(
        rank=rank,
        centipawn_score=10 * rank,
        mate_score=None,
        pv=(move,),
        pv_san=("x",),
        depth=depth,
    )


async def finish(
    pool: asyncpg.Pool,
    lines: list[ResultLine],
    *,
    nodes: int = 1000,
    seconds: float = 0.5,
) -> claims.ClaimedJob:
    """Claim the next row and finish it with `lines`, as a worker that searched as far."""
    job = await claims.claim_next(pool, "w", 30.0)
    assert job is not None
    searched = claims.Searched(depth=min(x.depth for x in lines), nodes=nodes, seconds=seconds)
    outcome = claims.Outcome.of(
        job, "w", claims.Ending.DONE, result=lines, engine_name="Stockfish", searched=searched
    )
    assert await claims.end(pool, outcome) is AnalysisStatus.DONE
    return job


async def test_a_second_request_is_answered_from_the_cache_at_once(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    first = await store(database, keyed(moves=2, depth=12))
    await finish(pool, [line(1, 12), line(2, 12, "d2d4")])
    again = await store(database, keyed(moves=2, depth=12))
    assert again.status is AnalysisStatus.DONE
    assert again.cached and not (await submissions.get(database, first.id)).cached  # type: ignore[union-attr]
    assert again.engine == "Stockfish"
    assert again.started_at is None, "no engine ran for it"
    assert again.result_lines() == [line(1, 12), line(2, 12, "d2d4")]
    assert await claims.claim_next(pool, "w", 30.0) is None, "nothing was queued"


async def test_the_cache_answers_what_it_searched_at_least_as_far(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    await store(database, keyed(moves=3, depth=14, time_limit=30.0))
    await finish(pool, [line(1, 14), line(2, 14, "d2d4"), line(3, 14, "c2c4")], seconds=2.0)

    fewer_lines = await store(database, keyed(moves=2, depth=14))
    assert fewer_lines.cached
    assert fewer_lines.result_lines() == [line(1, 14), line(2, 14, "d2d4")], "cut to 2 lines"
    shallower = await store(database, keyed(moves=1, depth=9))
    assert shallower.cached and shallower.result_lines() == [line(1, 14)]
    shorter = await store(database, keyed(moves=1, depth=None, time_limit=1.0))
    assert shorter.cached, "searched 2 s: answers a 1 s request"
    by_nodes = await store(database, keyed(moves=1, depth=None, time_limit=30.0, nodes=900))
    assert by_nodes.cached, "searched 1,000 nodes: answers a 900-node request"

    for further in (
        keyed(moves=4, depth=14),  # more lines
        keyed(moves=1, depth=15),  # deeper
        keyed(moves=1, depth=None, time_limit=3.0),  # longer
        keyed(moves=1, depth=None, time_limit=30.0, nodes=5000),  # more nodes
        keyed(moves=1, depth=9, fresh=True),  # asked to search anew
        keyed(REFERENCE_FEN, moves=1, depth=9),  # another position
    ):
        row = await store(database, further)
        assert row.status is AnalysisStatus.QUEUED and not row.cached, further


async def test_the_key_is_the_position_not_the_move_counters(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    await store(database, keyed(ITALIAN))
    await finish(pool, [line(1, 10)])
    later = ITALIAN.replace(" 4 4", " 0 17")
    assert (await store(database, keyed(later))).cached
    # an en passant square where no capture is legal is no part of the position
    sicilian = "rnbqkbnr/pp1ppppp/8/2p5/4P3/8/PPPP1PPP/RNBQKBNR w KQkq c6 0 2"
    await store(database, keyed(sicilian))
    await finish(pool, [line(1, 10)])
    assert (await store(database, keyed(sicilian.replace(" c6 ", " - ")))).cached


async def test_a_deeper_search_replaces_a_shallower_one_and_not_the_reverse(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    await store(database, keyed(depth=8))
    await finish(pool, [line(1, 8, "a2a3")])
    await store(database, keyed(depth=12))
    await finish(pool, [line(1, 12, "b2b3")])
    await store(database, keyed(depth=10, fresh=True))
    await finish(pool, [line(1, 10, "c2c3")])
    assert (await store(database, keyed(depth=8))).result_lines() == [line(1, 12, "b2b3")]


async def test_a_cached_answer_costs_only_the_least_charge(
    database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    tenant, _ = await tenants.create(
        pool, "limited", quotas=tenants.Quotas(engine_seconds_per_hour=40.0)
    )
    await store(database, keyed(time_limit=30.0))
    await finish(pool, [line(1, 10)])
    for _ in range(5):  # 150 s of time limits: only a cache can answer them all
        row = await enqueue(pool, keyed(time_limit=30.0), tenant=tenant)
        assert isinstance(row, Analysis) and row.cached, row
        assert row.tenant_id == tenant.id


async def test_a_cached_answer_equals_the_engines(
    database: AsyncEngine, stockfish: Path, start_worker: WorkerFactory
) -> None:
    """With one thread, a fixed depth and a new game, Stockfish is deterministic: the
    cache's answer is what a bare python-chess loop gets for the same request."""
    await start_worker(slots=1)
    first = await store(database, keyed(moves=3, depth=13))
    done = await wait_terminal(database, first, timeout=60)
    assert done.status is AnalysisStatus.DONE and not done.cached
    cached = await store(database, keyed(moves=3, depth=13))
    assert cached.cached
    assert done.started_at is not None and cached.started_at is None
    bare = await bare_lines(stockfish, ITALIAN, 3, 13)

    def essentials(lines: list[ResultLine]) -> list[tuple[object, ...]]:
        return [(x.rank, x.centipawn_score, x.mate_score, x.pv, x.depth) for x in lines]

    assert essentials(cached.result_lines() or []) == essentials(bare)
    assert cached.result_lines() == done.result_lines()


async def bare_lines(path: Path, fen: str, multipv: int, depth: int) -> list[ResultLine]:
    """What a bare python-chess loop gets: one thread, the same hash, a new game."""
    transport, protocol = await chess.engine.popen_uci(str(path))
    try:
        await protocol.configure({"Threads": 1, "Hash": EngineSettings().hash_mb})
        board = chess.Board(fen)
        infos = await protocol.analyse(
            board, chess.engine.Limit(depth=depth), multipv=multipv, game=uuid.uuid4()
        )
        return analysis.lines_from_infos(board, infos)
    finally:
        await protocol.quit()
        transport.close()
