"""Lichess's accuracy numbers, as pure functions of centipawns and Win%.

Each function is one of lila's, with the same arithmetic in the same order, so that the
floating-point results agree with Lichess's to the last bit where the operations allow:

- `winning_chances`: lila `WinPercent.winningChances` (scalachess `chess.eval`), on the
  raw centipawns: judgments use it unclamped, unlike Win%.
- `move_accuracy`: lila `AccuracyPercent.fromWinPercents`.
- `game_accuracy`: lila `AccuracyPercent.gameAccuracy`, the volatility-weighted mean and
  the harmonic mean of a side's move accuracies, averaged (scalalib `Maths` for the means
  and the population standard deviation).
- `centipawn_loss` and `average_centipawn_loss`: lila `AccuracyCP.diffsList` and `mean`.

Scores reach these functions as centipawns from White's point of view; a forced mate is
first turned into ±1000 (`ceiled_centipawns`), which is what lila's `forceAsCp` followed
by `ceiled` gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from api import lichess

INITIAL_CENTIPAWNS = 15
"""lila `Cp.initial`: the evaluation lila puts before the first move of every game."""

WINDOW_SIZE_BOUNDS = (2, 8)
"""The volatility window holds a tenth of the moves, within these bounds."""
WEIGHT_BOUNDS = (0.5, 12.0)
"""A move's weight (its window's standard deviation of Win%) is clamped to these bounds."""

_EXPONENT_CEILING = 700.0
"""Above this, `math.exp` overflows where the JVM returns infinity: the result is the same."""


def ceiled_centipawns(centipawns: int | None, mate: int | None) -> int:
    """A score as lila counts it for accuracy and loss: centipawns clamped to ±1000, a mate
    as ±1000 (positive: White mates)."""
    if centipawns is not None:
        return max(-lichess.CENTIPAWN_CEILING, min(lichess.CENTIPAWN_CEILING, centipawns))
    if mate is not None:
        return lichess.CENTIPAWN_CEILING if mate > 0 else -lichess.CENTIPAWN_CEILING
    raise ValueError("a score needs centipawns or a mate")


def winning_chances(centipawns: int) -> float:
    """lila `WinPercent.winningChances`: -1..+1, from centipawns that are *not* clamped."""
    exponent = min(lichess.MULTIPLIER * centipawns, _EXPONENT_CEILING)
    return max(-1.0, min(1.0, 2 / (1 + math.exp(exponent)) - 1))


def move_accuracy(win_before: float, win_after: float) -> float:
    """lila `AccuracyPercent.fromWinPercents`: the mover's Win% before and after the move,
    in the mover's view, to an accuracy of 0..100 (100 when the Win% did not fall)."""
    if win_after >= win_before:
        return 100.0
    fall = win_before - win_after
    raw = 103.1668100711649 * math.exp(-0.04354415386753951 * fall) + -3.166924740191411
    return max(0.0, min(100.0, raw + 1))  # + 1: lila's "uncertainty bonus"


def game_accuracy(white_moves_first: bool, centipawns: Sequence[int]) -> tuple[float, float] | None:
    """lila `AccuracyPercent.gameAccuracy`: (White's, Black's) accuracy of a game.

    `centipawns` holds the evaluation after each move, White's view, already ceiled. The
    Win% list starts with `INITIAL_CENTIPAWNS`, whatever the start position. Each move is
    weighted by the standard deviation of Win% over a window of the list: the windows are
    (size - 2) copies of the first window followed by every sliding window, so the first
    moves share the first window. None unless both sides have a move (lila's test: a
    single move has no accuracy for either side).
    """
    win_percents = [
        lichess.win_percent_from_centipawns(cp) for cp in [INITIAL_CENTIPAWNS, *centipawns]
    ]
    low, high = WINDOW_SIZE_BOUNDS
    size = max(low, min(high, len(centipawns) // 10))
    windows = [win_percents[:size]] * (min(size, len(win_percents)) - 2)
    windows.extend(_sliding(win_percents, size))
    weights = [max(WEIGHT_BOUNDS[0], min(WEIGHT_BOUNDS[1], _deviation(w))) for w in windows]
    # Pairs of successive Win%, one per move (lila `collect { case List(prev, next) }`).
    pairs = [pair for pair in _sliding(win_percents, 2) if len(pair) == 2]
    by_side: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for index, ((before, after), weight) in enumerate(zip(pairs, weights, strict=False)):
        white = (index % 2 == 0) == white_moves_first
        # Black's accuracy from White's Win%: "before" is the later value, as in lila.
        accuracy = move_accuracy(before, after) if white else move_accuracy(after, before)
        by_side[white].append((accuracy, weight))
    white_accuracy = _side_accuracy(by_side[True])
    black_accuracy = _side_accuracy(by_side[False])
    if white_accuracy is None or black_accuracy is None:
        return None
    return white_accuracy, black_accuracy


def centipawn_loss(before: int, after: int, white: bool) -> int:
    """lila `AccuracyCP.diffsList`, one move: how far the evaluation (ceiled, White's view)
    fell for the mover; never negative."""
    return max(0, (after - before) * (-1 if white else 1))


def average_centipawn_loss(losses: Sequence[int]) -> int | None:
    """lila `AccuracyCP.mean`: the mean loss, rounded half up (`Math.round`)."""
    if not losses:
        return None
    mean = sum(losses) / len(losses)
    floor = math.floor(mean)
    return floor + (1 if mean - floor >= 0.5 else 0)


def _side_accuracy(weighted: Sequence[tuple[float, float]]) -> float | None:
    """(weighted mean + harmonic mean) / 2, as lila's `colorAccuracy`."""
    if not weighted:
        return None
    total, total_weight = 0.0, 0.0
    for accuracy, weight in weighted:
        total, total_weight = total + accuracy * weight, total_weight + weight
    if total_weight == 0:
        return None
    inverse_sum = 0.0
    for accuracy, _ in weighted:
        inverse_sum += 1 / max(1.0, accuracy)
    return (total / total_weight + len(weighted) / inverse_sum) / 2


def _deviation(values: Sequence[float]) -> float:
    """scalalib `Maths.standardDeviation`: the population standard deviation."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))


def _sliding(values: list[float], size: int) -> list[list[float]]:
    """Scala's `sliding(size)`: every run of `size` values; a shorter list is one window."""
    if len(values) <= size:
        return [values] if values else []
    return [values[start : start + size] for start in range(len(values) - size + 1)]
