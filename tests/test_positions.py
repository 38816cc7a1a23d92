"""What a position is: the FEN reader's messages, `startpos`, the defaults, variants
refused, and `gameOver` (the reader and the types without a server, then over HTTP)."""

from __future__ import annotations

import chess
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import BadUserInputError
from api.types import GameOver, game_over
from api.validation import parse_position, read_fen
from tests.conftest import REFERENCE_FEN, Server
from tests.graphql_client import SUBMIT, post, submit
from tests.test_api import rows

START = chess.STARTING_FEN
START_BOARD = START.split()[0]
FULL_FEN_HINT = f'a full FEN reads "{START}" (the move counters may be left out)'
VARIANTS = "fen: Chess960 and other variants are not supported"


# --- the reader's messages --------------------------------------------------------

REFUSALS = [
    # the board
    (
        "rnbqkbnr/pppxpppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
        'fen: not a valid FEN: rank 7 ("pppxpppp") has an unknown piece "x"',
    ),
    (
        "rnbqkbnr/pppppppp/8/8/8/ppppppppp/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
        'fen: not a valid FEN: rank 3 ("ppppppppp") has 9 squares, need 8',
    ),
    (
        "rnbqkbnr/pppppppp/8/8/8/7/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
        'fen: not a valid FEN: rank 3 ("7") has 7 squares, need 8',
    ),
    (
        "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP w KQkq - 0 1",
        'fen: not a valid FEN: the board "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP" has 7 ranks, need 8',
    ),
    ("garbage", 'fen: not a valid FEN: the board "garbage" has 1 rank, need 8'),
    (
        "rnbqkbnr/pppppppp/8/8/44/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
        'fen: not a valid FEN: rank 4 ("44") has two counts of empty squares in a row',
    ),
    (
        "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RN0BQKBNR w KQkq - 0 1",
        'fen: not a valid FEN: rank 1 ("RN0BQKBNR") counts "0" empty squares',
    ),
    (
        "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBN\x00 w KQkq - 0 1",
        'fen: not a valid FEN: rank 1 ("RNBQKBN\\x00") has an unknown piece "\\x00"',
    ),
    # the other fields
    (
        f"{START_BOARD} x KQkq - 0 1",
        'fen: not a valid FEN: the side to move is "x", not "w" or "b"',
    ),
    (
        f"{START_BOARD} w KQxq - 0 1",
        'fen: not a valid FEN: the castling field "KQxq" has "x"; it is "-" or some of "KQkq"',
    ),
    (
        f"{START_BOARD} w KKq - 0 1",
        'fen: not a valid FEN: the castling field "KKq" repeats a letter',
    ),
    (
        f"{START_BOARD} w KQkq e9 0 1",
        'fen: not a valid FEN: the en passant square "e9" is not "-" or a square',
    ),
    (
        f"{START_BOARD} w KQkq - x 1",
        'fen: not a valid FEN: the halfmove clock "x" is not a count (digits only)',
    ),
    (
        f"{START_BOARD} w KQkq - 0 1.5",
        'fen: not a valid FEN: the fullmove number "1.5" is not a count (digits only)',
    ),
    (f"{START} x", "fen: not a valid FEN: 7 fields, a FEN has 6"),
    # fields left out
    (
        START_BOARD,
        "fen: not a valid FEN: the side to move, the castling rights and the en passant"
        f" square are missing; {FULL_FEN_HINT}",
    ),
    (
        f"{START_BOARD} w",
        "fen: not a valid FEN: the castling rights and the en passant square are missing;"
        f" {FULL_FEN_HINT}",
    ),
    (
        f"{START_BOARD} w KQkq",
        f"fen: not a valid FEN: the en passant square is missing; {FULL_FEN_HINT}",
    ),
    (
        f"{START_BOARD} w KQkq - 0",
        "fen: not a valid FEN: the fullmove number is missing: give both move counters, or neither",
    ),
    # moves after the position
    (
        "startpos moves e2e4 e7e5",
        "fen: moves after the position are not supported: send the FEN they lead to",
    ),
    (
        f"{START} moves e2e4",
        "fen: moves after the position are not supported: send the FEN they lead to",
    ),
]


@pytest.mark.parametrize(("fen", "message"), REFUSALS)
def test_a_malformed_fen_is_refused_naming_what_is_wrong(fen: str, message: str) -> None:
    with pytest.raises(BadUserInputError) as caught:
        parse_position(fen)
    assert str(caught.value) == message
    assert caught.value.extensions == {"code": "BAD_USER_INPUT", "field": "fen"}


VARIANT_REFUSALS = [
    (
        f"{START_BOARD} w HAha - 0 1",  # Shredder-FEN
        f'{VARIANTS} (the castling field "HAha" names rook files, as Shredder-FEN and X-FEN do)',
    ),
    (
        "rn2k1r1/ppp1pp1p/3p2p1/5bn1/P7/2N2B2/1PPPPP2/2BNK1RR w Gkq - 4 11",  # X-FEN
        f'{VARIANTS} (the castling field "Gkq" names rook files, as Shredder-FEN and X-FEN do)',
    ),
    (
        "bnrbkrqn/pppppppp/8/8/8/8/PPPPPPPP/BNRBKRQN w KQkq - 0 1",  # a Chess960 start
        f"{VARIANTS} (castling rights with the king or a rook off its starting square)",
    ),
    (
        "rnbkqbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBKQBNR w KQkq - 0 1",  # king on d1
        f"{VARIANTS} (castling rights with the king or a rook off its starting square)",
    ),
    (
        f"{START_BOARD}[] w KQkq - 0 1",  # Crazyhouse's pocket
        f'{VARIANTS} (rank 1 ("RNBQKBNR[]") has "[", as in Crazyhouse)',
    ),
    (
        f"{START} +0+0",  # Three-check, as lichess writes it
        f"{VARIANTS} (a count of checks, as in Three-check)",
    ),
    (
        f"{START_BOARD} w KQkq - 3+3 0 1",  # Three-check, as Stockfish's variants read it
        f"{VARIANTS} (a count of checks, as in Three-check)",
    ),
]


@pytest.mark.parametrize(("fen", "message"), VARIANT_REFUSALS)
def test_variants_are_refused_saying_so(fen: str, message: str) -> None:
    with pytest.raises(BadUserInputError) as caught:
        parse_position(fen)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("fen", "reason"),
    [
        # Castling rights no variant explains stay an impossible position.
        ("4k3/8/8/8/8/8/8/4K3 w K - 0 1", "castling rights do not match the kings and rooks"),
        ("r3k2r/8/8/8/8/8/8/R4RK1 w K - 0 1", "castling rights do not match the kings and rooks"),
        # A square that is not on the third or sixth rank is well formed, but impossible.
        (f"{START_BOARD} w KQkq e4 0 1", "the en passant square is not possible"),
    ],
)
def test_well_formed_but_impossible_positions_are_impossible(fen: str, reason: str) -> None:
    with pytest.raises(BadUserInputError) as caught:
        parse_position(fen)
    assert str(caught.value) == f"fen: impossible position: {reason}"


# --- what is accepted -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("startpos", START),
        (" startpos\n", START),
        (f"{START_BOARD} w KQkq -", START),  # the move counters left out: 0 1
        (f"{START_BOARD} w kqKQ - 0 1", START),  # castling letters in any order
        (f"{START_BOARD}\tw\u00a0KQkq  -  0 1", START),  # any whitespace between fields
        (f"{START_BOARD} w KQkq - 0 0", START),  # a fullmove number of 0 is read as 1
        (REFERENCE_FEN, REFERENCE_FEN),
    ],
)
def test_accepted_positions_are_stored_as_full_fens(text: str, fen: str) -> None:
    assert parse_position(text).fen() == fen


def test_the_reader_only_fills_in_what_it_may() -> None:
    assert read_fen("startpos") == START
    assert read_fen("8/8/6P1/4R3/8/6k1/2r5/6K1 b - -") == REFERENCE_FEN


# --- gameOver ---------------------------------------------------------------------

MATED = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"  # fool's mate
STALEMATE = "7k/5Q2/6K1/8/8/8/8/8 b - - 0 1"


@pytest.mark.parametrize(
    ("fen", "expected"),
    [
        (MATED, GameOver.CHECKMATE),
        (STALEMATE, GameOver.STALEMATE),
        ("8/8/8/4k3/8/8/8/4K3 w - - 0 1", GameOver.INSUFFICIENT_MATERIAL),
        ("8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 150 80", GameOver.SEVENTYFIVE_MOVES),
        # Without a legal move, mate or stalemate comes first (python-chess's outcome()
        # would say INSUFFICIENT_MATERIAL for this king and bishop against a king).
        ("k7/B7/1K6/8/8/8/8/8 b - - 0 1", GameOver.STALEMATE),
        # Mate on the 150th ply wins: the 75-move rule yields to it (FIDE 9.6.2).
        ("rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 150 80", GameOver.CHECKMATE),
        (REFERENCE_FEN, None),
        (START, None),
        ("8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 149 80", None),
    ],
)
def test_game_over_tells_how_the_rules_end_the_game(fen: str, expected: GameOver | None) -> None:
    assert game_over(fen) is expected


# --- over HTTP --------------------------------------------------------------------

WITH_GAME_OVER = (
    "mutation Submit($input: SubmitAnalysisInput!) {"
    " submitAnalysis(input: $input) { id status fen gameOver result { rank } } }"
)


@pytest.mark.parametrize(
    ("fen", "status", "ending"),
    [
        (MATED, "DONE", "CHECKMATE"),
        (STALEMATE, "DONE", "STALEMATE"),
        ("8/8/8/4k3/8/8/8/4K3 w - - 0 1", "QUEUED", "INSUFFICIENT_MATERIAL"),
        ("8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 150 80", "QUEUED", "SEVENTYFIVE_MOVES"),
        (REFERENCE_FEN, "QUEUED", None),
    ],
)
async def test_game_over_over_http(api: Server, fen: str, status: str, ending: str | None) -> None:
    body = await post(api.http_url, WITH_GAME_OVER, {"input": {"fen": fen}})
    analysis = body["data"]["submitAnalysis"]
    assert (analysis["status"], analysis["gameOver"]) == (status, ending)
    assert (analysis["result"] == []) is (status == "DONE")
    read = await post(api.http_url, "query($id: ID!) { analysis(id: $id) { gameOver } }", analysis)
    assert read == {"data": {"analysis": {"gameOver": ending}}}


async def test_startpos_is_the_starting_position(api: Server) -> None:
    submitted = await submit(api.http_url, fen="startpos")
    assert (submitted["status"], submitted["fen"]) == ("QUEUED", START)


async def test_a_board_alone_is_refused_and_not_stored(api: Server, database: AsyncEngine) -> None:
    body = await post(api.http_url, SUBMIT, {"input": {"fen": START_BOARD}})
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "fen"}
    assert error["message"] == (
        "fen: not a valid FEN: the side to move, the castling rights and the en passant"
        f" square are missing; {FULL_FEN_HINT}"
    )
    assert await rows(database) == 0


async def test_chess960_is_refused_saying_so(api: Server, database: AsyncEngine) -> None:
    body = await post(api.http_url, SUBMIT, {"input": {"fen": f"{START_BOARD} w HAha - 0 1"}})
    [error] = body["errors"]
    assert error["message"].startswith(VARIANTS)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "fen"}
    assert await rows(database) == 0
