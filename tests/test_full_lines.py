"""Full lines from real Stockfish.

A search stopped by the clock keeps, for each line, the deepest complete line the engine
reported for its first move; a search that reached its depth limit gives exactly what a
bare python-chess loop gets from the same engine settings.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import chess
import chess.engine
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db.claims import ClaimedJob
from db.models import AnalysisStatus, ResultLine
from engine import analysis
from engine.pool import Stockfish
from tests.conftest import REFERENCE_FEN
from tests.rows import request, store, wait_terminal

HASH_MB = 16
"""The worker's default hash size (`EngineSettings.hash_mb`), for the bare loop too."""

OPENINGS = {
    "starting position": "",
    "Italian": "e4 e5 Nf3 Nc6 Bc4 Bc5",
    "Najdorf": "e4 c5 Nf3 d6 d4 cxd4 Nxd4 Nf6 Nc3 a6",
    "Queen's Gambit Declined": "d4 d5 c4 e6 Nc3 Nf6",
    "French": "e4 e6 d4 d5 Nc3 Nf6",
    "Caro-Kann advance": "e4 c6 d4 d5 e5 Bf5",
    "King's Indian": "d4 Nf6 c4 g6 Nc3 Bg7 e4 d6",
    "London": "d4 d5 Bf4 Nf6 e3 c5",
}


def opening(moves: str) -> str:
    board = chess.Board()
    for move in moves.split():
        board.push_san(move)
    return board.fen()


class Recording(analysis.Reports):
    """Reports that also keep every report they see, to check the rule against."""

    def __init__(self) -> None:
        super().__init__()
        self.stream: list[chess.engine.InfoDict] = []

    def see(self, info: chess.engine.InfoDict) -> None:
        self.stream.append(info)
        super().see(info)


@pytest.fixture
async def engine(stockfish: Path) -> AsyncIterator[Stockfish]:
    """One engine as a worker's slot runs it."""
    engine = Stockfish(stockfish, hash_mb=HASH_MB, start_timeout=10)
    await engine.start()
    yield engine
    await engine.close()


def latest_earlier(
    recording: Recording, finals: list[chess.engine.InfoDict], first: chess.Move
) -> chess.engine.InfoDict | None:
    """The last report before the final ones that gave `first` a line (bounds aside)."""
    final_ids = {id(info) for info in finals}
    earlier = [
        info
        for info in recording.stream
        if info.get("pv")
        and info["pv"][0] == first
        and id(info) not in final_ids
        and not analysis.is_bound(info)
    ]
    return earlier[-1] if earlier else None


def uci(moves: list[chess.Move]) -> tuple[str, ...]:
    return tuple(move.uci() for move in moves)


@pytest.mark.parametrize("multipv", [1, 3])
async def test_a_line_stopped_by_the_clock_is_not_shorter_than_its_earlier_line(
    engine: Stockfish, multipv: int
) -> None:
    for name, moves in OPENINGS.items():
        board = chess.Board(opening(moves))
        job = ClaimedJob(
            id=uuid.uuid4(),
            fen=board.fen(),
            num_moves_to_return=multipv,
            time_limit=1.0,
            depth_limit=None,
            attempts=1,
            max_attempts=1,
        )
        recording = Recording()
        await asyncio.wait_for(analysis.follow(engine.protocol, board, job, recording), 10)
        finals = recording.final()
        assert analysis.stopped_early(job, finals), name
        lines = recording.lines(board, cut_short=True)
        assert [line.rank for line in lines] == list(range(1, multipv + 1)), name
        for line, final in zip(lines, finals, strict=True):
            # Score and depth are the final report's.
            white = final["score"].white()
            assert (line.centipawn_score, line.mate_score) == (white.score(), white.mate())
            assert line.depth == final["depth"]
            reported = uci(final["pv"])
            earlier = latest_earlier(recording, finals, final["pv"][0])
            if earlier is None:
                assert line.pv == reported, name
                continue
            before = uci(earlier["pv"])
            if line.pv[: len(reported)] != reported:
                # Only a line that repeats an earlier report's score and depth takes
                # other moves: that report's.
                assert analysis.repeats(final, earlier), (name, line.pv, reported)
                assert line.pv[: len(before)] == before, (name, line.pv, before)
            elif before[: len(reported)] == reported:
                # The final line is the beginning of the earlier one: never shorter.
                assert len(line.pv) >= len(before), (name, line.pv, before)


async def bare_lines(path: Path, fen: str, multipv: int, depth: int) -> list[ResultLine]:
    """What a bare python-chess loop gets: one thread, the same hash, win, draw and loss
    chances shown, a new game."""
    transport, protocol = await chess.engine.popen_uci(str(path))
    try:
        await protocol.configure({"Threads": 1, "Hash": HASH_MB, "UCI_ShowWDL": True})
        board = chess.Board(fen)
        infos = await protocol.analyse(
            board, chess.engine.Limit(depth=depth), multipv=multipv, game=object()
        )
        return analysis.lines_from_infos(board, infos)
    finally:
        await protocol.quit()
        transport.close()


DEPTH_LIMITED = [
    (opening(OPENINGS["French"]), 3, 14),
    (opening(OPENINGS["French"]), 1, 16),
    (opening(OPENINGS["Italian"]), 3, 12),
    (opening(OPENINGS["King's Indian"]), 1, 14),
    (opening(OPENINGS["Caro-Kann advance"]), 3, 13),
    (REFERENCE_FEN, 3, 10),
]
"""(position, lines, depth). At depth 14, the French's best line of three is the beginning
of the line the previous iteration gave its move: completing it would be wrong here, the
iteration finished."""


@pytest.mark.usefixtures("worker")
async def test_depth_limited_results_are_the_engines_own(
    database: AsyncEngine, stockfish: Path
) -> None:
    rows = [
        await store(database, request(fen, moves=lines, depth=depth, time_limit=60.0))
        for fen, lines, depth in DEPTH_LIMITED
    ]
    for row, (fen, lines, depth) in zip(rows, DEPTH_LIMITED, strict=True):
        done = await wait_terminal(database, row, timeout=60)
        assert done.status is AnalysisStatus.DONE
        assert done.result_lines() == await bare_lines(stockfish, fen, lines, depth), fen


@pytest.mark.usefixtures("worker")
async def test_a_worker_stopped_by_the_clock_returns_full_best_lines(
    database: AsyncEngine,
) -> None:
    rows = [
        await store(database, request(opening(moves), moves=1, time_limit=1.0))
        for moves in OPENINGS.values()
    ]
    short = []
    for row in rows:
        done = await wait_terminal(database, row, timeout=30)
        assert done.status is AnalysisStatus.DONE
        [line] = done.result_lines() or []
        if len(line.pv) <= 2:
            short.append(line.pv)
    # As the engine reports them last, a third to a half of such lines are one or two
    # moves long. Completed, one would be only if the stopped iteration turned to a move
    # no earlier iteration had given a line (not seen in 210 such searches): two allow
    # for that without hiding a regression.
    assert len(short) <= 2, short


async def test_a_search_cut_off_by_the_callers_bound_is_stopped(engine: Stockfish) -> None:
    job = ClaimedJob(
        id=uuid.uuid4(),
        fen=chess.STARTING_FEN,
        num_moves_to_return=3,
        time_limit=30.0,
        depth_limit=None,
        attempts=1,
        max_attempts=1,
    )
    with pytest.raises(TimeoutError):
        await analysis.analyse(engine.protocol, job, timeout=0.3)
    # The engine was told to stop: it answers at once and analyses the next job.
    await asyncio.wait_for(engine.protocol.ping(), 2)
    next_job = ClaimedJob(**{**job.__dict__, "id": uuid.uuid4(), "depth_limit": 8})
    lines, _ = await analysis.analyse(engine.protocol, next_job, timeout=10)
    assert [line.depth for line in lines] == [8, 8, 8]
