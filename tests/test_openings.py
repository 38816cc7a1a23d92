"""Opening names (`api.games.openings`): the last named position a game reaches, matched
by position, so transpositions count. Pure functions, no server needed."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import chess
import pytest

from api.games import openings
from api.games.openings import Line, Opening, opening_of
from api.games.pgn import from_moves, parse_pgn

ROOT = Path(__file__).resolve().parent.parent


def named(moves: str, fen: str | None = None) -> Opening | None:
    """The opening of the game of `moves` (SAN, space-separated) from `fen`."""
    return opening_of(from_moves(fen, moves.split(), max_plies=600).epds())


@pytest.mark.parametrize(
    ("moves", "eco", "name"),
    [
        ("e4 e6", "C00", "French Defense"),
        ("e4 e5 Nf3 Nc6 Bc4", "C50", "Italian Game"),
        ("e4 e5 Nf3 Nc6 Bb5", "C60", "Ruy Lopez"),
        ("e4 e5 Nf3 Nc6 Bb5 a6 Ba4 Nf6 O-O Be7", "C84", "Ruy Lopez: Closed"),
        ("e4 c5 Nf3 d6 d4 cxd4 Nxd4 Nf6 Nc3 a6", "B90", "Sicilian Defense: Najdorf Variation"),
        ("d4 d5 c4", "D06", "Queen's Gambit"),
        ("d4 d5 c4 e6", "D30", "Queen's Gambit Declined"),
    ],
)
def test_well_known_openings(moves: str, eco: str, name: str) -> None:
    assert named(moves) == Opening(eco, name)


def test_from_a_pgn() -> None:
    game = parse_pgn('[Event "x"]\n\n1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 {Morphy} 1/2-1/2', max_plies=600)
    assert opening_of(game.epds()) == Opening("C70", "Ruy Lopez: Morphy Defense")


def test_a_transposition_finds_the_name_of_the_position() -> None:
    # The English move order reaches the Queen's Gambit Declined, Queen's Knight Variation
    # (listed as 1. d4 d5 2. c4 e6 3. Nc3); the Ruy Lopez reached from 1. Nf3.
    listed = named("d4 d5 c4 e6 Nc3")
    assert listed == Opening("D31", "Queen's Gambit Declined: Queen's Knight Variation")
    assert named("c4 e6 Nc3 d5 d4") == listed
    assert named("Nf3 Nc6 e4 e5 Bb5") == Opening("C60", "Ruy Lopez")


def test_a_game_leaving_theory_keeps_the_last_name() -> None:
    assert named("e4 e5 Nf3 Nc6 Bb5 a6 Ba4 Nf6 O-O Be7 h4 h5 Kh2 Kf8 g3") == Opening(
        "C84", "Ruy Lopez: Closed"
    )


def test_the_last_named_position_wins_over_earlier_ones() -> None:
    epds = from_moves(None, ["e4", "e5", "Nf3", "Nc6", "Bb5"], max_plies=10).epds()
    assert opening_of(epds) == Opening("C60", "Ruy Lopez")
    assert opening_of(epds[:4]) == Opening("C40", "King's Knight Opening")
    assert opening_of(epds[:0]) is None
    assert opening_of(epds[:1]) is None  # the start position has no name


def test_a_fen_start_is_named_only_where_its_positions_are() -> None:
    # After 1. e4 e5 2. Nf3 Nc6, with other move counters: EPDs leave them out.
    fen = "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 0 17"
    assert named("", fen) == Opening("C44", "King's Knight Opening: Normal Variation")
    assert named("Bb5", fen) == Opening("C60", "Ruy Lopez")
    assert named("Kd7 Kd2", "4k3/8/8/8/8/8/4P3/4K3 b - - 0 1") is None


def test_every_line_of_the_data_names_a_position_of_its_own() -> None:
    lines = list(openings.lines())
    assert len(lines) == 3807
    assert len(openings.load()) == len(lines)  # no two lines reach the same position
    for line in lines[::97]:
        board = chess.Board()
        for san in line.sans:
            board.push_san(san)
        assert openings.load()[board.epd()] == Opening(line.eco, line.name)


def test_of_two_lines_reaching_one_position_the_longer_name_is_kept() -> None:
    short = Line("C60", "Ruy Lopez", ("e4",), order=5)
    long = Line("C61", "Ruy Lopez: Bird Variation", ("e4",), order=1)
    assert openings._preferred(long, short)
    assert not openings._preferred(short, long)
    later = Line("C62", "Ruy Lopez: Open Variation", ("e4",), order=9)  # as long as Bird's
    assert openings._preferred(later, long)


def test_the_table_is_built_on_first_use_and_fast() -> None:
    imported = subprocess.run(
        [sys.executable, "-c", "from api.games import openings; print(openings.load.cache_info())"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert "currsize=0" in imported.stdout  # importing builds nothing
    started = time.perf_counter()
    openings.load.__wrapped__()  # a fresh build, as on first use (about 0.3 s)
    assert time.perf_counter() - started < 2.0


def test_the_data_ships_with_the_package() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = settings["tool"]["setuptools"]["package-data"]["api.games"]
    folder = ROOT / "api" / "games"
    data = [path.relative_to(folder).as_posix() for path in (folder / "openings").iterdir()]
    assert {"a.tsv", "e.tsv", "SOURCE.md"} <= {Path(name).name for name in data}
    for name in data:
        assert any(fnmatch(name, pattern) for pattern in patterns), name
