"""Lichess's numbers of a position's evaluation, computed as lila computes them.

Win% (lila `WinPercent`): the chance of winning, 0..100, from a centipawn score clamped
to ±1000, through the logistic curve Lichess fitted to its games. A forced mate counts
as a score of ±1000: the winner's Win% is as high as a score can make it.
"""

from __future__ import annotations

import math

CENTIPAWN_CEILING = 1000
"""Scores beyond ±1000 centipawns all count as ±1000."""
MULTIPLIER = -0.00368208
"""lila `WinPercent.fromCentiPawns`."""


def win_percent_from_centipawns(centipawns: int) -> float:
    """Win% for the side the score favours when positive (White's view: White's Win%)."""
    clamped = max(-CENTIPAWN_CEILING, min(CENTIPAWN_CEILING, centipawns))
    return 50 + 50 * (2 / (1 + math.exp(MULTIPLIER * clamped)) - 1)


def win_percent(centipawns: int | None, mate: int | None) -> float:
    """Win% of a score: centipawns, or moves to mate (positive: the viewer mates)."""
    if mate is not None:
        return win_percent_from_centipawns(CENTIPAWN_CEILING if mate > 0 else -CENTIPAWN_CEILING)
    return win_percent_from_centipawns(centipawns or 0)
