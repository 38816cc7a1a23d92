"""Validation at the edge: pure functions, no server needed."""

from __future__ import annotations

import math

import pytest

from api.errors import BadUserInputError
from api.validation import Limits, parse_id, validate_submission
from tests.conftest import REFERENCE_FEN

LIMITS = Limits(max_moves_to_return=10, max_time_limit=60.0, max_depth_limit=60)


def submit(fen: str = REFERENCE_FEN, moves: int = 1, time: float = 1.0, depth: int | None = None):  # type: ignore[no-untyped-def]
    return validate_submission(fen, moves, time, depth, LIMITS)


def test_accepts_the_reference_position_and_normalises_it() -> None:
    request = submit("  " + REFERENCE_FEN + " ")
    assert request.fen == REFERENCE_FEN
    assert request.finished_result is None


@pytest.mark.parametrize(
    ("fen", "reason"),
    [
        ("", "must not be empty"),
        ("not a fen", "not a valid FEN"),
        ("8/8/8/8/8/8/8/9 w - - 0 1", "not a valid FEN"),
        ("x" * 500, "longer than"),
        ("8/8/8/8/8/8/8/8 w - - 0 1", "White has no king"),
        ("4k3/8/8/8/8/8/8/8 w - - 0 1", "White has no king"),
        ("4k3/8/8/8/8/8/8/3KK3 w - - 0 1", "more than one king"),
        ("P3k3/8/8/8/8/8/8/4K3 w - - 0 1", "pawns on the first or last rank"),
        ("4k3/8/8/8/8/8/8/4K2r b - - 0 1", "the side not to move is in check"),
        ("4k3/8/8/8/8/8/8/4K3 w K - 0 1", "castling rights"),
        ("4k3/8/8/8/8/8/8/4K3 w Q - 0 1", "castling rights"),
        ("4k3/8/8/8/8/8/8/R3K3 w Qk - 0 1", "castling rights"),
        ("4k3/8/8/8/8/8/8/4K3 w - e3 0 1", "en passant"),
    ],
)
def test_refuses_impossible_positions_naming_the_reason(fen: str, reason: str) -> None:
    with pytest.raises(BadUserInputError) as caught:
        submit(fen)
    assert str(caught.value).startswith("fen: ")
    assert reason in str(caught.value)
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "field": "fen"}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"moves": 0}, "numMovesToReturn"),
        ({"moves": 11}, "numMovesToReturn"),
        ({"time": 0.0}, "timeLimit"),
        ({"time": -1.0}, "timeLimit"),
        ({"time": 60.5}, "timeLimit"),
        ({"time": math.inf}, "timeLimit"),
        ({"time": math.nan}, "timeLimit"),
        ({"depth": 0}, "depthLimit"),
        ({"depth": 61}, "depthLimit"),
    ],
)
def test_refuses_limits_out_of_bounds(arguments: dict[str, float], field: str) -> None:
    with pytest.raises(BadUserInputError) as caught:
        submit(**arguments)
    assert str(caught.value).startswith(f"{field}: must be")


def test_accepts_real_castling_rights() -> None:
    start = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1"
    assert submit(start).fen == start


def test_accepts_the_bounds_themselves() -> None:
    assert submit(moves=10, time=60.0, depth=60).depth_limit == 60
    assert submit(moves=1, time=0.001, depth=1).num_moves_to_return == 1


@pytest.mark.parametrize(
    "fen",
    [
        "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3",  # fool's mate
        "7k/5Q2/6K1/8/8/8/8/8 b - - 0 1",  # stalemate
    ],
)
def test_a_position_without_legal_moves_is_finished_with_no_lines(fen: str) -> None:
    assert submit(fen).finished_result == ()


@pytest.mark.parametrize("value", ["", "42", "not-a-uuid", "1234567890abcdef1234567890abcdeg"])
def test_malformed_ids_are_bad_input(value: str) -> None:
    with pytest.raises(BadUserInputError, match=r"^id: not a valid analysis id"):
        parse_id(value)


def test_a_uuid_is_an_id() -> None:
    assert str(parse_id("8587e059-1693-48db-bb4c-78900c70c7c1")).startswith("8587e059")
