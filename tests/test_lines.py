"""Completing lines cut short by the clock, on reports recorded from Stockfish 15.1.

Each report is written as (rank, depth, centipawns for the side to move, bound, seconds,
moves), in the order the engine sent them. Every search here ran with a 1 s time limit
and no depth limit, one thread and a 16 MB hash, from a new game; a search of one line
is recorded whole, one of three lines from its last iterations.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

import chess
import chess.engine

from db.claims import ClaimedJob
from engine import analysis

Recorded = tuple[int, int, int, str | None, float, str]

# One report a line, as recorded.
# fmt: off
CARO_KANN = "rn1qkbnr/pp2pppp/2p5/3pPb2/3P4/8/PPP2PPP/RNBQKBNR w KQkq - 1 4"
CARO_KANN_ONE_LINE: list[Recorded] = [
    (1, 1, 22, None, 0.001, "f1d3"),
    (1, 2, 56, None, 0.001, "c2c3"),
    (1, 3, 56, None, 0.001, "c2c3"),
    (1, 4, 65, None, 0.001, "h2h4 d8a5 c1d2"),
    (1, 5, 62, None, 0.001, "c2c3"),
    (1, 6, 61, None, 0.002, "g1e2 d8a5 c2c3 e7e6"),
    (1, 7, 46, None, 0.003, "c2c3 e7e6 b1d2"),
    (1, 8, 49, None, 0.005, "c2c3 h7h6 f1d3 f5d3 d1d3"),
    (1, 9, 69, None, 0.01, "c2c4 e7e6 c4c5"),
    (1, 10, 36, None, 0.033, "g1f3 e7e6 b1d2 c6c5 f1b5 b8d7"),
    (1, 11, 42, None, 0.041, "c2c4 e7e6 b1c3 g8e7 f1e2 d5c4 e2c4 h7h6"),
    (1, 12, 41, None, 0.107, "g1f3 e7e6 f1e2 b8d7 a2a4 g8e7 c2c3 c6c5 e1g1 e7c6 d4c5 f8c5 b2b4"),
    (1, 13, 35, None, 0.138, "g1f3 e7e6 f1e2 b8d7 a2a4 g8e7 c2c3 c6c5 d4c5 e7c6 f3d4 f5b1"),
    (1, 14, 48, None, 0.224, "b1d2 e7e6 d2b3 a7a5 a2a4 d8h4 c2c3 h4e4 g1e2 h7h5 f2f3 e4c2"),
    (1, 15, 46, None, 0.298, "b1d2 e7e6 d2b3 b8d7 g1f3 b7b6 c2c3 c6c5"),
    (1, 16, 40, None, 0.437, "b1d2 e7e6 d2b3 b8d7 g1f3 a7a6 c1e3 g8e7 c2c3 e7g6 h2h4 h7h5 f1d3"
     " f5d3 d1d3 c6c5"),
    (1, 17, 41, None, 0.496, "b1d2 e7e6 d2b3 b8d7 g1f3 a7a6 c2c3 c6c5 f1e2 c5d4 b3d4 f5e4 e1g1"
     " g8e7"),
    (1, 18, 47, None, 0.865, "g1f3 e7e6 f1e2 g8e7 c2c3 e7g6 h2h4 h7h5 f3g5 f7f6 e5f6 g7f6 g5h3"
     " g6h4 h3f4"),
    (1, 19, 41, "upper", 1.001, "g1f3 e7e6"),
]
"""The clock stopped iteration 19 after its move fell below the window, two moves in."""

QUEENS_GAMBIT = "rnbqkb1r/ppp2ppp/4pn2/3p4/2PP4/2N5/PP2PPPP/R1BQKBNR w KQkq - 2 4"
QUEENS_GAMBIT_ONE_LINE: list[Recorded] = [
    (1, 1, 15, None, 0.001, "c4d5"),
    (1, 2, 46, None, 0.001, "c1f4"),
    (1, 3, 54, None, 0.001, "c4d5"),
    (1, 4, 107, None, 0.001, "c1f4"),
    (1, 5, 107, None, 0.001, "c1f4"),
    (1, 6, 43, None, 0.002, "c1g5 c7c5 c4d5"),
    (1, 7, 54, None, 0.004, "c4d5 f6d5 e2e4 d5c3 b2c3"),
    (1, 8, 54, None, 0.006, "c4d5 f6d5 e2e4 d5c3 b2c3"),
    (1, 9, 29, None, 0.013, "c1g5 d5c4 e2e3 c7c5 f1c4 c5d4 e3d4 b8c6 g1f3"),
    (1, 10, 30, None, 0.021, "e2e3 c7c5 g1f3 f8d6 c4d5 e6d5 d4c5 d6c5"),
    (1, 11, 31, None, 0.034, "c1g5 f8e7 e2e3 e8g8 g5h4 h7h6 g1f3 c7c6"),
    (1, 12, 38, None, 0.051, "c1g5 f8e7 e2e3 h7h6 g5h4 e8g8 g1f3 c7c5 d4c5 d5c4 f1c4"),
    (1, 13, 30, None, 0.084, "c1g5 f8e7 e2e3 h7h6 g5h4 f6e4 h4e7 d8e7 c3e4 d5e4"),
    (1, 14, 39, None, 0.102, "c1g5 f8e7 e2e3 e8g8 g1f3 h7h6 g5h4 c7c5 d4c5 d5c4 f1c4 d8d1 a1d1"),
    (1, 15, 35, None, 0.146, "c1g5 f8e7 e2e3 e8g8 g1f3 b7b6 f1d3 d5c4 d3c4 c7c5 d4c5 d8d1 a1d1"
     " e7c5"),
    (1, 16, 37, None, 0.216, "c4d5 e6d5 c1g5 f8e7 e2e3 h7h6 g5h4 c7c6 f1d3 e8g8 a1c1 f8e8 g1f3"),
    (1, 17, 32, None, 0.269, "c1g5 f8e7 e2e3 e8g8 g1f3 h7h6 g5h4 b7b6 f1d3 c7c5 e1g1 d5c4 d3c4"
     " b8d7 d1e2 c8b7 f1d1"),
    (1, 18, 26, None, 0.498, "c1g5 f8e7 e2e3 e8g8 g1f3 h7h6 g5f6 e7f6 a1c1 c7c6 f1d3 b8d7 e1g1"
     " f6e7 d1e2 d5c4"),
    (1, 19, 25, None, 0.577, "c1g5 f8e7 e2e3 e8g8 g1f3 h7h6 g5f6 e7f6 a1c1 b7b6 c4d5 e6d5 f1d3"
     " c8b7 d3c2 c7c5 e1g1"),
    (1, 20, 27, "lower", 1.002, "c4d5"),
]
"""In iteration 20 a move last best in iteration 16 rose above the window; the clock
stopped the search before its line was gathered."""

KINGS_INDIAN = "rnbqk2r/ppp1ppbp/3p1np1/8/2PPP3/2N5/PP3PPP/R1BQKBNR w KQkq - 0 5"
KINGS_INDIAN_THREE_LINES: list[Recorded] = [
    (1, 16, 74, None, 0.832, "g1f3 e8g8 f1e2 c7c5 d4d5 e7e6 h2h3 e6d5 e4d5 a7a6 f3d2"),
    (2, 16, 67, None, 0.832, "f1e2 e8g8 g1f3 e7e5 e1g1 e5d4 f3d4 b8c6 c1e3 c6d4 e3d4 b7b6 d1c2"
     " c8b7 f2f3"),
    (3, 16, 54, None, 0.832, "h2h3 e8g8 c1e3 c7c5 g1f3 d8a5 f1d3 f6d7 d3e2 c5d4 e3d4 g7d4"),
    (1, 17, 66, None, 1.002, "f1e2"),
    (2, 17, 65, None, 1.002, "g1f3 e8g8 f1e2 e7e5 e1g1 c8g4 d4d5 a7a5 c1g5 b8a6 a2a3 a6c5 h2h3"
     " g4f3 e2f3"),
    (3, 17, 54, None, 1.002, "h2h3 e8g8 c1e3 c7c5 g1f3 d8a5 f1d3 f6d7 d3e2 c5d4 f3d4 b8c6 e1g1"
     " d7c5 d4b3 a5c7 b3c5 d6c5"),
]
"""The best line of the stopped iteration 17 is one move, the second best of iteration 16."""

FRENCH = "rnbqkb1r/ppp2ppp/4pn2/3p4/3PP3/2N5/PPP2PPP/R1BQKBNR w KQkq - 2 4"
FRENCH_THREE_LINES: list[Recorded] = [
    (1, 16, 42, None, 0.588, "e4e5 f6d7 f2f4 c7c5 g1f3 b8c6 c1e3 d8b6 a2a3 f8e7 f1e2 a7a6 d4c5"
     " e7c5 c3a4 b6a5 b2b4 a5a4"),
    (2, 16, 38, None, 0.588, "c1g5 d5e4 c3e4 b8d7 e4f6 d7f6 g1f3 h7h6 g5h4 a7a6 f1d3 c7c5 e1g1"
     " c5d4"),
    (3, 16, 14, None, 0.588, "e4d5 e6d5 g1f3 f8d6 f1d3 e8g8 e1g1 c7c6 f1e1 f8e8 e1e8 f6e8 h2h3"
     " b8d7 c3e2"),
    (1, 17, 40, None, 1.002, "e4e5 f6d7 f2f4 c7c5 g1f3 b8c6 c1e3 d8b6 a2a3 c5d4 f3d4 f8c5 c3b5"
     " a7a6 b2b4 a6b5 b4c5"),
    (2, 17, 31, None, 1.002, "c1g5 d5e4 c3e4 b8d7 e4f6 d7f6 g1f3 c7c5 d1d3 c5d4 e1c1 a7a6 f1e2"
     " f8e7 f3e5 d8a5 d3d4 a5a2"),
    (3, 17, 3, "upper", 1.002, "d1d3 c7c5"),
]
"""The third line of the stopped iteration is a move no earlier report gave."""

START_THREE_LINES: list[Recorded] = [
    (1, 15, 29, None, 0.559, "d2d4 d7d5 c2c4 c7c6 g1f3 c8f5 d1b3 d8b6 c4d5 b6b3 a2b3 f5b1"),
    (2, 15, 25, None, 0.559, "g1f3 d7d5 g2g3 g8f6 f1g2 c7c6 e1g1 c8f5 c2c4 e7e6 c4d5 c6d5 d1a4"
     " d8d7"),
    (3, 15, 23, None, 0.559, "e2e4 c7c5 c2c3 g8f6 e4e5 f6d5 d2d4 c5d4 c3d4 d7d6 g1f3 b8c6 f1c4"
     " d5b6 c4b3"),
    (1, 16, 38, None, 0.755, "g1f3 d7d5 d2d4 c7c6 c2c4 g8f6 b1c3 g7g6 d1b3 f8g7 c4d5 c6d5 c1g5"
     " e8g8"),
    (2, 16, 36, None, 0.755, "d2d4 d7d5 c2c4 e7e6 g1f3 d5c4 e2e3 g8f6 f1c4 c7c5 e1g1 c5d4 e3d4"
     " b8c6 b1c3 f8e7"),
    (3, 16, 26, None, 0.755, "e2e4 c7c5 c2c3 g8f6 e4e5 f6d5 d2d4 c5d4 c3d4 d7d6 g1f3 b8c6 f1c4"
     " e7e6 d1e2 f8e7 e1g1 d6e5 d4e5 e8g8 b1c3 d5c3 b2c3"),
    (1, 17, 41, None, 1.003, "d2d4 g8f6 c2c4 e7e6 g1f3 f8b4 c1d2 b4e7 b1c3 d7d5 d2f4 c7c5 d4c5"
     " e7c5 e2e3 e8g8"),
    (2, 16, 38, None, 1.003, "g1f3 c7c5"),
    (3, 16, 26, None, 1.003, "e2e4 c7c5 c2c3 g8f6 e4e5 f6d5 d2d4 c5d4 c3d4 d7d6 g1f3 b8c6 f1c4"
     " e7e6 d1e2 f8e7 e1g1 d6e5 d4e5 e8g8 b1c3 d5c3 b2c3"),
]
"""The second line of the stopped iteration 17 repeats Nf3's score and depth from
iteration 16 (the iteration had not finished that move) but with other moves: the
unfinished search had already replaced them."""
# fmt: on


def reports(board: chess.Board, recorded: list[Recorded]) -> list[chess.engine.InfoDict]:
    """The recorded reports as python-chess parses them."""
    parsed: list[chess.engine.InfoDict] = []
    for rank, depth, centipawns, bound, seconds, moves in recorded:
        info: dict[str, Any] = {
            "multipv": rank,
            "depth": depth,
            "score": chess.engine.PovScore(chess.engine.Cp(centipawns), board.turn),
            "time": seconds,
            "pv": [chess.Move.from_uci(move) for move in moves.split()],
        }
        if bound is not None:
            info[f"{bound}bound"] = True
        parsed.append(cast(chess.engine.InfoDict, info))
    return parsed


def seen(board: chess.Board, recorded: list[Recorded]) -> analysis.Reports:
    """`Reports` that have seen the recorded reports, in order."""
    stream = analysis.Reports()
    for info in reports(board, recorded):
        stream.see(info)
    return stream


def moves(recorded: Recorded) -> tuple[str, ...]:
    return tuple(recorded[5].split())


def test_a_best_line_cut_short_is_completed_by_the_previous_iteration() -> None:
    board = chess.Board(CARO_KANN)
    stream = seen(board, CARO_KANN_ONE_LINE)
    # As the engine reported it last, the line is two moves long (what workers returned).
    [reported] = analysis.lines_from_infos(board, stream.final())
    assert reported.pv == ("g1f3", "e7e6")
    [line] = stream.lines(board, cut_short=True)
    assert line.pv == moves(CARO_KANN_ONE_LINE[-2])
    assert len(line.pv) == 15
    assert line.pv_san[:4] == ("Nf3", "e6", "Be2", "Ne7")
    # Score and depth stay those of the last report.
    assert (line.centipawn_score, line.mate_score, line.depth) == (41, None, 19)


def test_a_line_takes_the_latest_earlier_line_of_its_first_move() -> None:
    board = chess.Board(QUEENS_GAMBIT)
    stream = seen(board, QUEENS_GAMBIT_ONE_LINE)
    assert [line.pv for line in analysis.lines_from_infos(board, stream.final())] == [("c4d5",)]
    [line] = stream.lines(board, cut_short=True)
    # cxd5 was best at depths 1, 3, 7, 8 and 16: its line from depth 16 is the deepest.
    assert line.pv == moves(QUEENS_GAMBIT_ONE_LINE[15])
    assert (line.centipawn_score, line.depth) == (27, 20)


def test_a_line_is_completed_from_an_earlier_line_of_another_rank() -> None:
    board = chess.Board(KINGS_INDIAN)
    stream = seen(board, KINGS_INDIAN_THREE_LINES)
    assert analysis.lines_from_infos(board, stream.final())[0].pv == ("f1e2",)
    lines = stream.lines(board, cut_short=True)
    assert [line.rank for line in lines] == [1, 2, 3]
    assert lines[0].pv == moves(KINGS_INDIAN_THREE_LINES[1])
    assert (lines[0].centipawn_score, lines[0].depth) == (66, 17)
    # Lines the stopped iteration gathered in full are its own.
    assert lines[1].pv == moves(KINGS_INDIAN_THREE_LINES[4])
    assert lines[2].pv == moves(KINGS_INDIAN_THREE_LINES[5])


def test_a_line_that_repeats_an_earlier_score_takes_that_reports_moves() -> None:
    board = chess.Board()
    stream = seen(board, START_THREE_LINES)
    assert analysis.lines_from_infos(board, stream.final())[1].pv == ("g1f3", "c7c5")
    lines = stream.lines(board, cut_short=True)
    assert lines[1].pv == moves(START_THREE_LINES[3])
    assert (lines[1].centipawn_score, lines[1].depth) == (38, 16)
    assert [lines[0].pv, lines[2].pv] == [moves(START_THREE_LINES[6]), moves(START_THREE_LINES[8])]


def test_a_line_that_turns_away_with_a_score_of_its_own_keeps_its_moves() -> None:
    board = chess.Board(CARO_KANN)
    # The recorded search, its stopped iteration's line turned onto another reply.
    turned: Recorded = (1, 19, 30, "upper", 1.001, "g1f3 f7f6")
    [line] = seen(board, [*CARO_KANN_ONE_LINE[:-1], turned]).lines(board, cut_short=True)
    assert line.pv == ("g1f3", "f7f6")
    assert (line.centipawn_score, line.depth) == (30, 19)


def test_a_first_move_no_earlier_report_gave_stays_as_reported() -> None:
    board = chess.Board(FRENCH)
    lines = seen(board, FRENCH_THREE_LINES).lines(board, cut_short=True)
    assert lines[2].pv == ("d1d3", "c7c5")
    assert lines[2].centipawn_score == 3


def test_a_search_that_reached_its_depth_is_left_as_reported() -> None:
    board = chess.Board(KINGS_INDIAN)
    stream = seen(board, KINGS_INDIAN_THREE_LINES)
    final = analysis.lines_from_infos(board, stream.final())
    assert stream.lines(board, cut_short=False) == final


def test_a_bound_report_is_not_kept_and_a_beginning_does_not_shorten_a_line() -> None:
    board = chess.Board(CARO_KANN)
    full = CARO_KANN_ONE_LINE[-2]
    stream = seen(
        board,
        [
            full,
            # After 3 s the engine also reports bounds in the middle of an iteration.
            (1, 19, 30, "upper", 3.5, "g1f3 f7f6"),
            (1, 19, 41, None, 4.2, "g1f3 e7e6 f1e2"),
            (1, 20, 40, "lower", 5.0, "g1f3"),
        ],
    )
    [line] = stream.lines(board, cut_short=True)
    assert line.pv == moves(full)
    assert (line.centipawn_score, line.depth) == (40, 20)


def test_reports_without_moves_are_passed_over() -> None:
    board = chess.Board(CARO_KANN)
    stream = seen(board, CARO_KANN_ONE_LINE[-2:])
    stream.see({"string": "NNUE evaluation using nn-ad9b42354671.nnue enabled"})
    stream.see({"depth": 20, "currmove": chess.Move.from_uci("g1f3"), "currmovenumber": 1})
    [final] = stream.final()
    assert final["depth"] == 19


def job(depth_limit: int | None, time_limit: float = 1.0) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(),
        fen=CARO_KANN,
        num_moves_to_return=1,
        time_limit=time_limit,
        depth_limit=depth_limit,
        attempts=1,
        max_attempts=1,
    )


def test_only_the_clock_stops_a_search_without_a_depth_limit_or_short_of_it() -> None:
    finals = seen(chess.Board(CARO_KANN), CARO_KANN_ONE_LINE).final()
    assert analysis.stopped_early(job(None), finals)
    assert analysis.stopped_early(job(20), finals)


def test_a_search_at_its_depth_limit_was_stopped_by_the_clock_only_when_time_ran_out() -> None:
    board = chess.Board(CARO_KANN)
    # Iteration 18 ended at 0.865 s.
    finals = seen(board, CARO_KANN_ONE_LINE[:-1]).final()
    assert not analysis.stopped_early(job(18, time_limit=5.0), finals)
    assert not analysis.stopped_early(job(18, time_limit=0.867), finals)
    # Iteration 19 was stopped at 1.001 s by a 1 s limit.
    finals = seen(board, CARO_KANN_ONE_LINE).final()
    assert analysis.stopped_early(job(19, time_limit=1.0), finals)
