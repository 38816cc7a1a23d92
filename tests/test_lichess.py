"""Lichess's Win% (lila `WinPercent`), as a pure function."""

from __future__ import annotations

import math

import pytest

from api.lichess import win_percent, win_percent_from_centipawns


def lila(cp: int) -> float:
    """lila's formula, written out again: 50 + 50 * winningChances(cp.ceiled)."""
    ceiled = max(-1000, min(1000, cp))
    return 50 + 50 * (2 / (1 + math.exp(-0.00368208 * ceiled)) - 1)


@pytest.mark.parametrize("cp", [-5000, -1000, -350, -100, -1, 0, 1, 30, 100, 350, 999, 1000, 9999])
def test_the_curve(cp: int) -> None:
    assert win_percent_from_centipawns(cp) == pytest.approx(lila(cp))


def test_its_shape() -> None:
    assert win_percent(0, None) == 50
    assert win_percent(100, None) == pytest.approx(59.1, abs=0.05)
    assert win_percent(100, None) + win_percent(-100, None) == pytest.approx(100)
    assert win_percent(1000, None) == win_percent(3000, None) == pytest.approx(97.55, abs=0.01)


def test_a_mate_counts_as_the_ceiling() -> None:
    assert win_percent(None, 3) == win_percent(None, 1) == win_percent_from_centipawns(1000)
    assert win_percent(None, -2) == win_percent_from_centipawns(-1000)
