"""Lichess's game review numbers (lila's `Advice`, `AccuracyPercent`, `AccuracyCP`), pure.

Positions are written by hand (scores White's view, best lines in UCI and SAN), so no engine
and no database are needed; the expected numbers are lila's.
"""

from __future__ import annotations

import math

import pytest

from api import lichess
from api.games import accuracy
from api.games.review import Move, Position, Review, Score, review

# lila modules/analyse/src/test/AccuracyPercentTest.scala: (centipawns after each move,
# (White's accuracy, tolerance), (Black's accuracy, tolerance)), or None for no accuracy.
WHITE_FIRST = {
    "empty game": ([], None),
    "single move": ([15], None),
    "two good moves": ([15, 15], ((100, 1), (100, 1))),
    "white blunders on first move": ([-900, -900], ((10, 5), (100, 1))),
    "black blunders on first move": ([15, 900], ((100, 1), (10, 5))),
    "both blunder on first move": ([-900, 0], ((10, 5), (10, 5))),
    "20 perfect moves": ([15] * 20, ((100, 1), (100, 1))),
    "20 perfect moves and a white blunder": ([15] * 20 + [-900], ((50, 5), (100, 1))),
    "21 perfect moves and a black blunder": ([15] * 21 + [900], ((100, 1), (50, 5))),
    "5 average moves (65 cpl) on each side": ([-50, 15] * 5, ((76, 8), (76, 8))),
    "50 average moves (65 cpl) on each side": ([-50, 15] * 50, ((76, 8), (76, 8))),
    "50 mediocre moves (150 cpl) on each side": ([-135, 15] * 50, ((54, 8), (54, 8))),
    "50 terrible moves (500 cpl) on each side": ([-435, 15] * 50, ((20, 8), (20, 8))),
}
BLACK_FIRST = {
    "empty game": ([], None),
    "single move": ([15], None),
    "two good moves": ([15, 15], ((100, 1), (100, 1))),
    "black blunders on first move": ([900, 900], ((100, 1), (10, 5))),
    "white blunders on first move": ([15, -900], ((10, 5), (100, 1))),
    "both blunder on first move": ([900, 0], ((10, 5), (10, 5))),
}

Expected = tuple[tuple[int, int], tuple[int, int]] | None


def assert_game_accuracy(white_first: bool, centipawns: list[int], expected: Expected) -> None:
    result = accuracy.game_accuracy(white_first, centipawns)
    if expected is None:
        assert result is None
        return
    assert result is not None
    for value, (target, tolerance) in zip(result, expected, strict=True):
        assert abs(value - target) <= tolerance


@pytest.mark.parametrize(("centipawns", "expected"), WHITE_FIRST.values(), ids=WHITE_FIRST)
def test_lila_game_accuracy_white_first(centipawns: list[int], expected: Expected) -> None:
    assert_game_accuracy(True, centipawns, expected)


@pytest.mark.parametrize(("centipawns", "expected"), BLACK_FIRST.values(), ids=BLACK_FIRST)
def test_lila_game_accuracy_black_first(centipawns: list[int], expected: Expected) -> None:
    assert_game_accuracy(False, centipawns, expected)


def test_move_accuracy_is_lilas_curve() -> None:
    assert accuracy.move_accuracy(50, 50) == accuracy.move_accuracy(40, 60) == 100
    fall = 10.0
    curve = 103.1668100711649 * math.exp(-0.04354415386753951 * fall) - 3.166924740191411 + 1
    assert accuracy.move_accuracy(60, 50) == pytest.approx(curve)
    assert accuracy.move_accuracy(100, 0) == 0  # clamped, the curve goes below 0


def test_average_centipawn_loss_rounds_half_up() -> None:
    assert accuracy.average_centipawn_loss([10, 15]) == 13  # 12.5; round() would say 12
    assert accuracy.average_centipawn_loss([0, 1]) == 1
    assert accuracy.average_centipawn_loss([0, 0, 1]) == 0
    assert accuracy.average_centipawn_loss([]) is None


def test_winning_chances_of_huge_scores_do_not_overflow() -> None:
    assert accuracy.winning_chances(-400_000) == -1
    assert accuracy.winning_chances(400_000) == 1


# A game is written as the moves' UCI and SAN, and one Position per position.


def cp(centipawns: int, best: str | None = None, *line: str) -> Position:
    """A position worth `centipawns` (White's view), with best move `best` = (uci, san)."""
    return scored(Score(centipawns, None), best, *line)


def mate(moves: int, best: str | None = None, *line: str) -> Position:
    return scored(Score(None, moves), best, *line)


def scored(score: Score, best: str | None, *line: str) -> Position:
    """`best` is "uci san"; `line` is the rest of the best line in SAN."""
    uci, san = best.split() if best else (None, None)
    return Position(score, uci, san, (san, *line) if san else ())


UNKNOWN = Position(None, None, None, ())


def game(played: list[str], positions: list[Position], white_first: bool = True) -> Review:
    """Review moves given as "uci san", starting with White unless told otherwise."""
    moves = []
    for index, text in enumerate(played):
        uci, san = text.split()
        white = (index % 2 == 0) == white_first
        number = 1 + (index + (0 if white_first else 1)) // 2
        moves.append(Move(index + 1, number, white, uci, san, fen_before="irrelevant"))
    return review(moves, positions)


def judged(white: bool, before: Position, after: Position) -> Review:
    """A game whose last move (White's or Black's, played a2a3 / a7a6 while the best line
    starts Qd2 / Qd7) goes from `before` to `after`; the moves before it were the best."""
    if white:
        return game(
            ["e2e4 e4", "e7e5 e5", "a2a3 a3"],
            [cp(15, "e2e4 e4"), cp(30, "e7e5 e5"), before, after],
        )
    return game(["e2e4 e4", "a7a6 a6"], [cp(15, "e2e4 e4"), before, after])


def comment(reviewed: Review) -> str | None:
    judgment = reviewed.plies[-1].judgment
    return None if judgment is None else f"{judgment.name} {judgment.comment}"


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (-39, None),
        (-40, "INACCURACY (0.15 → -0.40) Inaccuracy. e4 was best."),
        (-94, "INACCURACY (0.15 → -0.94) Inaccuracy. e4 was best."),
        (-95, "MISTAKE (0.15 → -0.95) Mistake. e4 was best."),
        (-151, "MISTAKE (0.15 → -1.51) Mistake. e4 was best."),
        (-152, "BLUNDER (0.15 → -1.52) Blunder. e4 was best."),
    ],
)
def test_the_first_move_is_judged_from_the_initial_15(after: int, expected: str | None) -> None:
    reviewed = game(["a2a3 a3"], [cp(40, "e2e4 e4"), cp(after)])
    assert comment(reviewed) == expected


def test_the_initial_15_holds_from_any_start_position() -> None:
    """lila's `Info.start`: +0.15 before the first move, even where the engine says -5."""
    reviewed = game(["d1d5 Qxd5"], [cp(-500, "c3d5 Nxd5"), cp(-520)])
    assert comment(reviewed) == "BLUNDER (0.15 → -5.20) Blunder. Nxd5 was best."
    assert reviewed.plies[0].centipawn_loss == 535


def test_a_black_move_is_judged_from_blacks_side() -> None:
    reviewed = judged(False, cp(30, "d8d7 Qd7"), cp(200))
    assert comment(reviewed) == "MISTAKE (0.30 → 2.00) Mistake. Qd7 was best."
    assert judged(False, cp(30, "d8d7 Qd7"), cp(-200)).plies[-1].judgment is None


def test_judgments_read_raw_centipawns() -> None:
    """+15.00 → +5.50 is a Mistake on the raw scores; clamped to +10.00 it would be less."""
    reviewed = judged(True, cp(1500, "d1d2 Qd2"), cp(550))
    assert comment(reviewed) == "MISTAKE (15.00 → 5.50) Mistake. Qd2 was best."


@pytest.mark.parametrize(
    ("centipawns", "shown"),
    [(0, "0.00"), (5, "0.05"), (-5, "-0.05"), (-100, "-1.00"), (1234, "12.34"), (-1007, "-10.07")],
)
def test_evaluations_are_shown_in_pawns_with_two_decimals(centipawns: int, shown: str) -> None:
    reviewed = judged(True, cp(centipawns, "d1d2 Qd2"), mate(-3))
    assert comment(reviewed) is not None
    assert f"({shown} → Mate in 3)" in str(comment(reviewed))


def test_no_judgment_for_the_engines_own_move() -> None:
    """lila keeps the best line only when the move played differs: no line, no judgment."""
    reviewed = judged(True, cp(300, "a2a3 a3"), cp(-900))
    ply = reviewed.plies[-1]
    assert (ply.judgment, ply.best_move_uci, ply.best_move_san, ply.best_line_san) == (None,) * 4
    assert ply.centipawn_loss == 1200


def test_no_judgment_without_a_best_line() -> None:
    assert judged(True, cp(300), cp(-900)).plies[-1].judgment is None


@pytest.mark.parametrize(
    ("white", "before", "after", "expected"),
    [
        # cp → mated: "Checkmate is now unavoidable", by how bad the position was.
        (
            True,
            cp(105, "d1d2 Qd2"),
            mate(-3),
            "BLUNDER (1.05 → Mate in 3) Checkmate is now unavoidable. Qd2 was best.",
        ),
        (
            True,
            cp(-800, "d1d2 Qd2"),
            mate(-3),
            "MISTAKE (-8.00 → Mate in 3) Checkmate is now unavoidable. Qd2 was best.",
        ),
        (
            True,
            cp(-1000, "d1d2 Qd2"),
            mate(-3),
            "INACCURACY (-10.00 → Mate in 3) Checkmate is now unavoidable. Qd2 was best.",
        ),
        (
            True,
            cp(-700, "d1d2 Qd2"),
            mate(-1),
            "BLUNDER (-7.00 → Mate in 1) Checkmate is now unavoidable. Qd2 was best.",
        ),
        (
            False,
            cp(1200, "d8d7 Qd7"),
            mate(2),
            "INACCURACY (12.00 → Mate in 2) Checkmate is now unavoidable. Qd7 was best.",
        ),
        # mating → cp, or → mated: "Lost forced checkmate sequence", by what is left.
        (
            True,
            mate(2, "d1h5 Qh5+", "g6", "Qxg6#"),
            cp(1200),
            "INACCURACY (Mate in 2 → 12.00) Lost forced checkmate sequence. Qh5+ was best.",
        ),
        (
            True,
            mate(2, "d1h5 Qh5+"),
            cp(1000),
            "INACCURACY (Mate in 2 → 10.00) Lost forced checkmate sequence. Qh5+ was best.",
        ),
        (
            True,
            mate(2, "d1h5 Qh5+"),
            cp(999),
            "MISTAKE (Mate in 2 → 9.99) Lost forced checkmate sequence. Qh5+ was best.",
        ),
        (
            True,
            mate(2, "d1h5 Qh5+"),
            cp(700),
            "BLUNDER (Mate in 2 → 7.00) Lost forced checkmate sequence. Qh5+ was best.",
        ),
        (
            True,
            mate(2, "d1h5 Qh5+"),
            mate(-1),
            "BLUNDER (Mate in 2 → Mate in 1) Lost forced checkmate sequence. Qh5+ was best.",
        ),
        (
            False,
            mate(-3, "d8h4 Qh4+"),
            cp(-800),
            "MISTAKE (Mate in 3 → -8.00) Lost forced checkmate sequence. Qh4+ was best.",
        ),
        # No judgment: a longer mate, escaping a mate, finding one, or being mated later.
        (True, mate(2, "d1h5 Qh5+"), mate(5), None),
        (True, mate(-3, "d1d2 Qd2"), cp(-500), None),
        (True, cp(300, "d1d2 Qd2"), mate(4), None),
        (True, mate(-5, "d1d2 Qd2"), mate(-2), None),
        (False, mate(3, "d8d7 Qd7"), mate(1), None),
    ],
)
def test_judgments_with_a_mate(
    white: bool, before: Position, after: Position, expected: str | None
) -> None:
    assert comment(judged(white, before, after)) == expected


def test_the_best_line_is_cut_to_twelve_plies() -> None:
    line = [f"m{n}" for n in range(2, 20)]
    reviewed = judged(True, cp(0, "d1d2 Qd2", *line), cp(-10))
    ply = reviewed.plies[-1]
    assert (ply.best_move_uci, ply.best_move_san) == ("d1d2", "Qd2")
    assert ply.best_line_san == ("Qd2", *line[:11])


def test_a_black_first_move_is_measured_from_15_seen_by_black() -> None:
    """lila's `fromEvalsAndPov` prepends the initial +15 after turning the scores to Black's
    side; the loss (`AccuracyCP`) reads the same +15 from White's side."""
    reviewed = game(["e7e5 e5"], [cp(15, "e7e5 e5"), cp(15)], white_first=False)
    ply = reviewed.plies[0]
    fifteen = lichess.win_percent_from_centipawns(15)
    minus_fifteen = lichess.win_percent_from_centipawns(-15)
    assert ply.accuracy == accuracy.move_accuracy(fifteen, minus_fifteen) < 100
    assert ply.centipawn_loss == 0


FOOLS_MATE = ["f2f3 f3", "e7e5 e5", "g2g4 g4", "d8h4 Qh4#"]


def fools_mate(*unknown: int) -> Review:
    positions = [
        cp(20, "e2e4 e4"),
        cp(-50, "e7e5 e5"),
        cp(-60, "b1c3 Nc3"),
        mate(-1, "d8h4 Qh4#"),
        Position(None, None, None, (), checkmate=True),
    ]
    for index in unknown:
        positions[index] = UNKNOWN
    return game(FOOLS_MATE, positions)


def test_a_game_ending_in_mate() -> None:
    reviewed = fools_mate()
    f3, e5, g4, qh4 = reviewed.plies
    assert f3.eval_after == Score(-50, None)
    assert f3.win_percent_after == lichess.win_percent(-50, None)
    assert f3.judgment is not None
    assert f3.judgment.comment == "(0.15 → -0.50) Inaccuracy. e4 was best."
    assert (f3.centipawn_loss, e5.centipawn_loss, g4.centipawn_loss) == (65, 0, 940)
    assert e5.judgment is None and e5.best_line_san is None and e5.accuracy == 100
    assert g4.judgment is not None
    assert g4.judgment.name == "BLUNDER"
    assert g4.judgment.comment == "(-0.60 → Mate in 1) Checkmate is now unavoidable. Nc3 was best."
    assert g4.win_percent_after == lichess.win_percent_from_centipawns(-1000)
    assert g4.accuracy == accuracy.move_accuracy(
        lichess.win_percent(-60, None), lichess.win_percent(-1000, None)
    )
    # The mating move: lila drops the mated position, so it gets nothing at all.
    assert qh4.move.san == "Qh4#"
    assert (qh4.eval_after, qh4.win_percent_after, qh4.judgment) == (None, None, None)
    assert (qh4.accuracy, qh4.centipawn_loss, qh4.best_move_uci, qh4.best_line_san) == (None,) * 4

    expected = accuracy.game_accuracy(True, [-50, -60, -1000])
    assert reviewed.white is not None and reviewed.black is not None
    assert (reviewed.white.accuracy, reviewed.black.accuracy) == expected
    assert reviewed.black.accuracy == 100
    assert (reviewed.white.inaccuracies, reviewed.white.mistakes, reviewed.white.blunders) == (
        1,
        0,
        1,
    )
    assert reviewed.white.acpl == 503  # (65 + 940) / 2, half up
    assert (reviewed.black.acpl, reviewed.black.inaccuracies, reviewed.black.blunders) == (0, 0, 0)


def test_a_checkmate_is_also_the_engines_mate_0() -> None:
    positions = [cp(15, "e2e4 e4"), mate(-1, "d8h4 Qh4#"), Position(Score(None, 0), None, None, ())]
    reviewed = game(["e2e4 e4", "d8h4 Qh4#"], positions)
    assert reviewed.plies[-1].eval_after is None
    assert reviewed.white is None and reviewed.black is None  # Black has no analysed move


def test_acpl_of_both_sides() -> None:
    reviewed = game(
        ["e2e4 e4", "e7e5 e5", "g1f3 Nf3", "b8c6 Nc6"],
        [cp(15, "e2e4 e4"), cp(5, "e7e5 e5"), cp(15, "g1f3 Nf3"), cp(0, "g8f6 Nf6"), mate(3)],
    )
    assert [ply.centipawn_loss for ply in reviewed.plies] == [10, 10, 15, 1000]
    assert reviewed.white is not None and reviewed.black is not None
    assert reviewed.white.acpl == 13  # 12.5 rounded half up
    assert reviewed.black.acpl == 505  # a mate counts as 1000
    assert reviewed.black.blunders == 1
    expected = accuracy.game_accuracy(True, [5, 15, 0, 1000])
    assert expected is not None
    assert (reviewed.white.accuracy, reviewed.black.accuracy) == expected


def test_a_partial_review() -> None:
    """e5's position after is unknown: e5 has no numbers; g4 its evaluation only."""
    reviewed = fools_mate(2)
    f3, e5, g4, qh4 = reviewed.plies
    assert f3.judgment is not None and f3.accuracy is not None and f3.centipawn_loss == 65
    assert (e5.eval_after, e5.win_percent_after, e5.accuracy, e5.centipawn_loss) == (None,) * 4
    assert e5.best_move_uci is None  # known, but it was the move played
    assert g4.eval_after == Score(None, -1)
    assert (g4.best_move_uci, g4.judgment, g4.accuracy, g4.centipawn_loss) == (None,) * 4
    assert qh4.eval_after is None
    assert reviewed.white is None and reviewed.black is None


def test_the_first_move_needs_only_the_position_after() -> None:
    reviewed = fools_mate(0)
    f3 = reviewed.plies[0]
    assert f3.centipawn_loss == 65 and f3.accuracy is not None
    assert (f3.best_move_uci, f3.judgment) == (None, None)
    assert reviewed.white is None


def test_nothing_known_yet() -> None:
    reviewed = fools_mate(0, 1, 2, 3)
    assert [ply.eval_after for ply in reviewed.plies] == [None] * 4
    assert [ply.judgment for ply in reviewed.plies] == [None] * 4
    assert reviewed.white is None and reviewed.black is None


def test_a_final_stalemate_is_0() -> None:
    stalemate = Position(None, None, None, (), stalemate=True)
    reviewed = game(
        ["e2e4 e4", "e7e5 e5", "d1g7 Qg7"],
        [cp(15, "e2e4 e4"), cp(20), cp(800, "d1f7 Qf7+"), stalemate],
    )
    last = reviewed.plies[-1]
    assert last.eval_after == Score(0, None)
    assert last.judgment is not None
    assert last.judgment.comment == "(8.00 → 0.00) Blunder. Qf7+ was best."
    assert reviewed.white is not None and reviewed.white.acpl == 400  # (0 + 800) / 2


def test_a_stalemate_on_the_first_move_is_judged_from_15() -> None:
    """From a FEN where White is +8, stalemating at once costs nothing: lila starts at +0.15."""
    stalemate = Position(None, None, None, (), stalemate=True)
    reviewed = game(["d1g7 Qg7"], [cp(800, "d1f7 Qf7+"), stalemate])
    assert reviewed.plies[0].judgment is None
    assert reviewed.plies[0].centipawn_loss == 15


def test_a_one_move_game_has_no_summaries() -> None:
    reviewed = game(["e2e4 e4"], [cp(15, "e2e4 e4"), cp(20)])
    assert reviewed.plies[0].accuracy == 100
    assert reviewed.white is None and reviewed.black is None


def test_a_game_with_no_moves() -> None:
    assert review([], [cp(15, "e2e4 e4")]) == Review(plies=[], white=None, black=None)
    assert review([], [UNKNOWN]) == Review(plies=[], white=None, black=None)


def test_positions_must_match_the_moves() -> None:
    with pytest.raises(ValueError, match="1 moves need 2 positions, not 1"):
        game(["e2e4 e4"], [cp(15)])
