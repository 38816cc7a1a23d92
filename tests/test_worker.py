"""The worker with real Stockfish: wake-up by NOTIFY, results, engine identity, start-up."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import chess
import chess.engine
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db import claims
from db.models import AnalysisStatus
from engine import analysis
from engine.pool import Stockfish
from engine.worker import Worker
from tests.conftest import REFERENCE_FEN
from tests.rows import request, store, wait_terminal


async def test_a_notification_wakes_an_idle_worker(database: AsyncEngine, worker: Worker) -> None:
    # The worker polls every 300 s, so only the notification can wake it in time.
    await asyncio.wait_for(worker.wait_idle(), 10)
    started = time.monotonic()
    row = await store(database, request(depth=2))
    done = await wait_terminal(database, row, timeout=10)
    assert done.status is AnalysisStatus.DONE
    assert time.monotonic() - started < 10
    assert done.worker_id == worker.id
    assert (done.engine or "").startswith("Stockfish")


@pytest.mark.usefixtures("worker")
async def test_worker_returns_lines_best_first_and_fewer_when_few_moves(
    database: AsyncEngine,
) -> None:
    many = await store(database, request(moves=3, depth=8))
    # White king on a1 checked along the first rank: exactly two legal moves.
    few = await store(database, request(fen="k7/8/8/8/8/8/8/K6r w - - 0 1", moves=5, depth=6))
    many_done = await wait_terminal(database, many)
    few_done = await wait_terminal(database, few)
    many_lines = many_done.result_lines() or []
    assert [line.rank for line in many_lines] == [1, 2, 3]
    assert many_lines[0].mate_score == -2
    few_lines = few_done.result_lines() or []
    board = chess.Board("k7/8/8/8/8/8/8/K6r w - - 0 1")
    assert len(few_lines) == board.legal_moves.count() == 2
    assert {line.pv[0] for line in few_lines} == {move.uci() for move in board.legal_moves}


async def test_analysis_scores_are_from_whites_point_of_view(stockfish: Path) -> None:
    engine = Stockfish(stockfish, hash_mb=16, start_timeout=10)
    await engine.start()
    try:
        black_mates = claims.ClaimedJob(
            id=uuid.uuid4(),
            fen=REFERENCE_FEN,
            num_moves_to_return=1,
            time_limit=5.0,
            depth_limit=12,
            attempts=1,
            max_attempts=3,
        )
        [line] = (await analysis.analyse(engine.protocol, black_mates, timeout=15)).lines
        assert (line.mate_score, line.centipawn_score) == (-2, None)
        assert line.pv[:3] == ("c2c1", "e5e1", "c1e1")
        assert line.pv_san[:3] == ("Rc1+", "Re1", "Rxe1#")
        # The mirrored position: now White mates in two, so the score turns positive.
        mirrored = chess.Board(REFERENCE_FEN).mirror().fen()
        white_mates = claims.ClaimedJob(**{**black_mates.__dict__, "fen": mirrored})
        [line] = (await analysis.analyse(engine.protocol, white_mates, timeout=15)).lines
        assert line.mate_score == 2
        assert engine.name.startswith("Stockfish")
    finally:
        await engine.close()


async def test_an_engine_that_overruns_its_bound_is_a_timeout(stockfish: Path) -> None:
    engine = Stockfish(stockfish, hash_mb=16, start_timeout=10)
    await engine.start()
    try:
        job = claims.ClaimedJob(
            id=uuid.uuid4(),
            fen=chess.STARTING_FEN,
            num_moves_to_return=1,
            time_limit=30.0,
            depth_limit=None,
            attempts=1,
            max_attempts=3,
        )
        try:
            await analysis.analyse(engine.protocol, job, timeout=0.3)
        except TimeoutError:
            pass
        else:
            raise AssertionError("a 30 s search bounded by 0.3 s must time out")
        await engine.restart()
        assert isinstance(engine.protocol, chess.engine.UciProtocol)
    finally:
        await engine.close()
