"""Validation at the edge (positions, limits, ids, listing cursors): pure functions, no
server needed."""

from __future__ import annotations

import base64
import math
import uuid
from datetime import UTC, datetime

import pytest

from api import cursors
from api.errors import BadUserInputError, BadUserInputGroupError
from api.validation import Limits, parse_id, validate_submission
from db.insight import Position
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


def test_every_bad_field_is_named() -> None:
    with pytest.raises(BadUserInputGroupError) as caught:
        submit("garbage", moves=0, time=0.0, depth=0)
    assert [str(error).split(":")[0] for error in caught.value.errors] == [
        "fen",
        "numMovesToReturn",
        "timeLimit",
        "depthLimit",
    ]
    assert caught.value.extensions == {
        "code": "BAD_USER_INPUT",
        "fields": ["fen", "numMovesToReturn", "timeLimit", "depthLimit"],
    }


def test_one_bad_field_is_a_single_error() -> None:
    with pytest.raises(BadUserInputError) as caught:
        submit("garbage")
    assert not isinstance(caught.value, BadUserInputGroupError)


@pytest.mark.parametrize("nodes", [0, -5, 1_000_000_001])
def test_refuses_a_node_limit_out_of_bounds(nodes: int) -> None:
    with pytest.raises(BadUserInputError) as raised:
        validate_submission(REFERENCE_FEN, 1, 1.0, None, LIMITS, nodes_limit=nodes)
    assert raised.value.extensions["field"] == "nodesLimit"
    assert "between 1 and 1,000,000,000" in str(raised.value)


def test_the_request_carries_its_position_key_node_limit_and_freshness() -> None:
    sicilian = "rnbqkbnr/pp1ppppp/8/2p5/4P3/8/PPPP1PPP/RNBQKBNR w KQkq c6 0 2"
    request = validate_submission(sicilian, 2, 1.0, None, LIMITS, nodes_limit=50_000, fresh=True)
    assert request.position_key == "rnbqkbnr/pp1ppppp/8/2p5/4P3/8/PPPP1PPP/RNBQKBNR w KQkq -"
    assert request.nodes_limit == 50_000 and request.fresh and request.share_key is None
    shared = validate_submission(sicilian, 2, 1.0, None, LIMITS)
    assert shared.share_key is not None and shared.share_key.startswith(request.position_key)


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


# --- move counters ----------------------------------------------------------------

WITH_COUNTERS = "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - {} {}"


@pytest.mark.parametrize(("halfmove", "fullmove"), [(150, 1), (0, 10_000), (150, 8_849)])
def test_accepts_the_largest_counters_a_game_can_have(halfmove: int, fullmove: int) -> None:
    fen = WITH_COUNTERS.format(halfmove, fullmove)
    assert submit(fen).fen == fen


@pytest.mark.parametrize(
    ("halfmove", "fullmove", "reasons"),
    [
        ("151", "1", ["halfmove clock is over 150"]),
        ("0", "10001", ["fullmove number is over 10000"]),
        ("9" * 32, "9" * 32, ["halfmove clock is over 150", "fullmove number is over 10000"]),
        ("1" + "0" * 40, "1", ["halfmove clock is over 150"]),
    ],
)
def test_refuses_move_counters_no_game_can_reach(
    halfmove: str, fullmove: str, reasons: list[str]
) -> None:
    with pytest.raises(BadUserInputError) as caught:
        submit(WITH_COUNTERS.format(halfmove, fullmove))
    message = str(caught.value)
    assert message.startswith("fen: impossible move counters: ")
    assert all(reason in message for reason in reasons), message
    assert "75-move rule" in message or "8,849" in message
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "field": "fen"}


@pytest.mark.parametrize(("halfmove", "fullmove"), [("+1_0", "1"), ("0", "\u0663"), ("-1", "1")])
def test_counters_are_plain_digits(halfmove: str, fullmove: str) -> None:
    # Python's int() takes a sign, underscores and other scripts' digits; a FEN does not.
    with pytest.raises(BadUserInputError, match=r"^fen: not a valid FEN: the .* is not a count"):
        submit(WITH_COUNTERS.format(halfmove, fullmove))


# --- listing cursors --------------------------------------------------------------

ROW_ID = uuid.UUID("8587e059-1693-48db-bb4c-78900c70c7c1")


def b64(raw: str | bytes) -> str:
    return base64.urlsafe_b64encode(raw if isinstance(raw, bytes) else raw.encode()).decode()


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2026, 11, 29, 13, 38, 31, 185705, tzinfo=UTC),
        datetime(2026, 11, 29, tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),
    ],
)
def test_a_cursor_decodes_to_the_position_it_was_made_from(created_at: datetime) -> None:
    position = Position(created_at=created_at, id=ROW_ID)
    cursor = cursors._encode(position)
    assert len(cursor) <= cursors.MAX_CURSOR_LENGTH
    assert cursors.decode(cursor) == position


CRAFTED_CURSORS = {
    # well-formed dates that cannot be put in UTC (the year would be 0 or 10000)
    "year 1, +14:00": b64(f"0001-01-01T00:00:00+14:00|{ROW_ID}"),
    "year 9999, -14:00": b64(f"9999-12-31T23:59:59-14:00|{ROW_ID}"),
    # another offset, no offset, another spelling of UTC
    "+01:00": b64(f"2026-01-01T00:00:00+01:00|{ROW_ID}"),
    "naive": b64(f"2026-01-01T00:00:00|{ROW_ID}"),
    "Z": b64(f"2026-01-01T00:00:00Z|{ROW_ID}"),
    "date only": b64(f"2026-01-01|{ROW_ID}"),
    # other spellings of the UUID
    "upper-case UUID": b64(f"2026-01-01T00:00:00+00:00|{str(ROW_ID).upper()}"),
    "hex UUID": b64(f"2026-01-01T00:00:00+00:00|{ROW_ID.hex}"),
    "URN UUID": b64(f"2026-01-01T00:00:00+00:00|urn:uuid:{ROW_ID}"),
    # other shapes
    "no separator": b64("hello"),
    "empty": "",
    "empty parts": b64("|"),
    "extra part": b64(f"2026-01-01T00:00:00+00:00|{ROW_ID}|x"),
    "huge numbers": b64("9" * 30 + "-01-01T00:00:00+00:00|" + "9" * 32),
    "NUL": b64(f"2026-01-01T00:00:00+00:00\x00|{ROW_ID}"),
    # not our base64
    "not UTF-8": b64(b"\xff\xfe\xfd|\x80"),
    "standard alphabet": base64.b64encode(b"\xfb\xff" + f"|{ROW_ID}".encode()).decode(),
    "whitespace": " " + b64(f"2026-01-01T00:00:00+00:00|{ROW_ID}"),
    "no padding": b64(f"2026-01-01T00:00:00+00:00|{ROW_ID}").rstrip("="),
    "bad padding": "YQ",
    "not ASCII": "é" * 8,
    "too long": "A" * 10_000,
}


@pytest.mark.parametrize("cursor", CRAFTED_CURSORS.values(), ids=CRAFTED_CURSORS.keys())
def test_crafted_cursors_are_bad_input_naming_the_argument(cursor: str) -> None:
    with pytest.raises(BadUserInputError) as caught:
        cursors.decode(cursor)
    assert str(caught.value) == "after: not a cursor from this listing"
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "field": "after"}
