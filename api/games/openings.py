"""Opening names: the last named position a game reaches.

The names are Lichess's data set (`openings/*.tsv`, public domain, see
`openings/SOURCE.md`): 3,807 lines of ECO code, name and the moves that reach the named
position. Each line's moves are played once, on first use, into a table from the position
reached (its EPD, `board.epd()`: no move counters, en passant only where a capture is
legal, as `PlayedMove.epd_after` keys positions) to the name. A game is named by position,
not by move order, so a transposition finds the name of the position it reaches.

Building the table plays ~8,600 moves (the lines are sorted so that a line shares the
board with the one before it as far as their moves agree): about 0.3 s, once per process.
Call `load()` at start-up, off the event loop, to keep that from the first request.

When two lines reach the same position, the longer name (the more specific one, "Sicilian
Defense: Najdorf Variation" over "Sicilian Defense") is kept; of names as long, the one
listed last. (The data set as shipped names each position once.)
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import chess

DATA = "openings"
"""The folder of the data files, beside this module."""


@dataclass(frozen=True)
class Opening:
    """The name of an opening position."""

    eco: str
    """Its code in the Encyclopaedia of Chess Openings, `A00` to `E99`."""
    name: str
    """Its name as Lichess gives it: a family, then after a colon its variations
    ("Sicilian Defense: Najdorf Variation, English Attack")."""


@dataclass(frozen=True)
class Line:
    """One line of the data set."""

    eco: str
    name: str
    sans: tuple[str, ...]
    """The moves that reach the named position, in SAN."""
    order: int
    """Its place in the data set (files `a` to `e`, then lines), from 0."""


def opening_of(epds: Sequence[str]) -> Opening | None:
    """The name of the last position of `epds` (a game's positions, keyed by
    `board.epd()`, the start first) that has one; None if none has."""
    names = load()
    for epd in reversed(epds):
        opening = names.get(epd)
        if opening is not None:
            return opening
    return None


@functools.cache
def load() -> Mapping[str, Opening]:
    """The name of each named position, by EPD; built on the first call, then kept."""
    kept: dict[str, Line] = {}
    board = chess.Board()
    played: list[str] = []  # the moves on `board`
    for line in sorted(lines(), key=lambda line: line.sans):
        shared = 0
        while shared < min(len(played), len(line.sans)) and played[shared] == line.sans[shared]:
            shared += 1
        del played[shared:]
        while len(board.move_stack) > shared:
            board.pop()
        for san in line.sans[shared:]:
            board.push_san(san)
            played.append(san)
        epd = board.epd()
        if epd not in kept or _preferred(line, kept[epd]):
            kept[epd] = line
    return {epd: Opening(line.eco, line.name) for epd, line in kept.items()}


def _preferred(line: Line, other: Line) -> bool:
    """True when `line` names the position better than `other`: a longer (more specific)
    name, or as long and listed later."""
    return (len(line.name), line.order) > (len(other.name), other.order)


def lines() -> Iterator[Line]:
    """The lines of the data set, in its order."""
    order = 0
    folder = resources.files("api.games").joinpath(DATA)
    for data in sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".tsv")),
        key=lambda entry: entry.name,
    ):
        rows = data.read_text(encoding="utf-8").splitlines()
        for row in rows[1:]:  # the first row names the columns
            if not row.strip():
                continue
            eco, name, moves = row.split("\t")
            sans = tuple(token for token in moves.split() if not token[0].isdigit())
            yield Line(eco, name, sans, order)
            order += 1
