"""Checks at the edge: a request is valid here or refused with BAD_USER_INPUT.

A position is read in two steps. `read_fen` reads the FEN's fields itself, so that a
refusal names what is wrong (the rank and the character, the field); python-chess then
builds the board and judges whether the position can occur in a game. The API never
starts an engine.

What a position may be:

- a FEN with its six fields, or without the two move counters (then `0 1`);
- `startpos`, the standard starting position (as in UCI's `position startpos`).

What is refused, each with its own message:

- a FEN without the side to move, the castling rights or the en passant square:
  guessing them would change the analysis;
- moves after the position (`startpos moves e2e4`): the stored position is a FEN, and a
  FEN keeps no history for the engine to see repetitions in;
- Chess960 and other variants: castling letters naming files (Shredder-FEN, X-FEN),
  castling rights that only Chess960 explains, Crazyhouse's pockets and promoted
  pieces, Three-check's check counts.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import chess

from api import errors
from api.errors import BadUserInputError
from db.submissions import NewAnalysis

MAX_FEN_LENGTH = 120
"""A legal FEN is under 90 characters; anything much longer is refused unread."""

MAX_HALFMOVE_CLOCK = 150
"""The highest halfmove clock a game can reach. The 75-move rule (FIDE Laws 9.6.2, since
2014) ends the game as a draw once 75 moves by each side (150 plies) pass without a
capture or a pawn move, so a clock of 150 can stand in a game's last position and no
larger one can occur. (Stockfish reads both counters into `int`s, which a counter of 32
digits overflowed.)"""

MAX_FULLMOVE_NUMBER = 10_000
"""A round bound above the longest game the rules allow. A game holds at most 118
captures and pawn moves, and the 75-move rule allows at most 150 plies without one, so no
game lasts more than about 118 * 150 plies: exactly 17,697 (8,848½ moves, the last
position being at move 8,849; Tom Murphy VII played one out, "Is this the longest chess
game?", SIGBOVIK 2020). A fullmove number above 8,849 is made up; 10,000 leaves a margin
and keeps the counter far from overflowing the engine's."""


STATUS_REASONS = {
    chess.STATUS_NO_WHITE_KING: "White has no king",
    chess.STATUS_NO_BLACK_KING: "Black has no king",
    chess.STATUS_TOO_MANY_KINGS: "a side has more than one king",
    chess.STATUS_TOO_MANY_WHITE_PAWNS: "White has more than 8 pawns",
    chess.STATUS_TOO_MANY_BLACK_PAWNS: "Black has more than 8 pawns",
    chess.STATUS_PAWNS_ON_BACKRANK: "pawns on the first or last rank",
    chess.STATUS_TOO_MANY_WHITE_PIECES: "White has more than 16 pieces",
    chess.STATUS_TOO_MANY_BLACK_PIECES: "Black has more than 16 pieces",
    chess.STATUS_BAD_CASTLING_RIGHTS: "castling rights do not match the kings and rooks",
    chess.STATUS_INVALID_EP_SQUARE: "the en passant square is not possible",
    chess.STATUS_OPPOSITE_CHECK: "the side not to move is in check",
    chess.STATUS_EMPTY: "the board is empty",
    chess.STATUS_TOO_MANY_CHECKERS: "the king is checked by too many pieces",
    chess.STATUS_IMPOSSIBLE_CHECK: "the check cannot have arisen from a legal move",
}


STARTPOS = "startpos"
"""Stands for the standard starting position, as in UCI."""

VARIANTS_NOT_SUPPORTED = "Chess960 and other variants are not supported"

MISSING_FIELDS = ("the side to move", "the castling rights", "the en passant square")
"""The fields after the board that a FEN must have, in their order."""

PIECES = frozenset("PNBRQKpnbrqk")
EMPTY_SQUARE_COUNTS = frozenset("123456789")
"""Digits that count empty squares ("9" is read only to say that a rank is too long)."""
CASTLING_LETTERS = "KQkq"
ROOK_FILES = frozenset("ABCDEFGHabcdefgh")
FILES = "abcdefgh"
RANKS = "12345678"
CRAZYHOUSE = frozenset("[]~")
THREE_CHECK = re.compile(r"\+?[0-3]\+[0-3]")
"""Three-check's count of checks, a field of its own ("3+3", "+0+0")."""


def read_fen(text: str) -> str:
    """The FEN `text` stands for, with its six fields, if its fields are well formed;
    BadUserInputError naming the first that is not. Whether the position can occur is
    not judged here."""
    if text == STARTPOS:
        return chess.STARTING_FEN
    fields = text.split()
    if "moves" in fields:
        raise BadUserInputError(
            "fen", "moves after the position are not supported: send the FEN they lead to"
        )
    if any(THREE_CHECK.fullmatch(field) for field in fields[1:]):
        raise _variant("a count of checks, as in Three-check")
    if len(fields) > 6:
        raise _not_a_fen(f"{len(fields)} fields, a FEN has 6")
    board, rest = fields[0], fields[1:]
    _check_board(board)
    if rest and rest[0] not in ("w", "b"):
        raise _not_a_fen(f'the side to move is {_quoted(rest[0])}, not "w" or "b"')
    castling = _castling(rest[1]) if len(rest) > 1 else "-"
    if len(rest) > 2:
        _check_en_passant(rest[2])
    counters = rest[3:] or ["0", "1"]
    for name, value in zip(("halfmove clock", "fullmove number"), counters, strict=False):
        if not value.isascii() or not value.isdigit():
            raise _not_a_fen(f"the {name} {_quoted(value)} is not a count (digits only)")
    if len(rest) < len(MISSING_FIELDS):
        raise _not_a_fen(
            f"{_listed(MISSING_FIELDS[len(rest) :])} missing;"
            f' a full FEN reads "{chess.STARTING_FEN}" (the move counters may be left out)'
        )
    if len(counters) == 1:
        raise _not_a_fen("the fullmove number is missing: give both move counters, or neither")
    return " ".join([board, rest[0], castling, rest[2], *counters])


def _check_board(board: str) -> None:
    """Refuse a board field without 8 ranks of 8 squares of known pieces."""
    ranks = board.split("/")
    if len(ranks) != 8:
        counted = "1 rank" if len(ranks) == 1 else f"{len(ranks)} ranks"
        raise _not_a_fen(f"the board {_quoted(board)} has {counted}, need 8")
    for number, rank in zip(range(8, 0, -1), ranks, strict=True):
        where = f"rank {number} ({_quoted(rank)})"
        squares = 0
        after_count = False
        for character in rank:
            if character in CRAZYHOUSE:
                raise _variant(f"{where} has {_quoted(character)}, as in Crazyhouse")
            if character in EMPTY_SQUARE_COUNTS and after_count:
                raise _not_a_fen(f"{where} has two counts of empty squares in a row")
            if character == "0":
                raise _not_a_fen(f'{where} counts "0" empty squares')
            if character not in EMPTY_SQUARE_COUNTS and character not in PIECES:
                raise _not_a_fen(f"{where} has an unknown piece {_quoted(character)}")
            after_count = character in EMPTY_SQUARE_COUNTS
            squares += int(character) if after_count else 1
        if squares != 8:
            raise _not_a_fen(f"{where} has {squares} squares, need 8")


def _castling(field: str) -> str:
    """The castling field in the order python-chess reads (`KQkq`), if well formed."""
    if field == "-":
        return field
    if ROOK_FILES & set(field):
        raise _variant(
            f"the castling field {_quoted(field)} names rook files, as Shredder-FEN and X-FEN do"
        )
    for letter in field:
        if letter not in CASTLING_LETTERS:
            raise _not_a_fen(
                f"the castling field {_quoted(field)} has {_quoted(letter)};"
                ' it is "-" or some of "KQkq"'
            )
    if len(set(field)) < len(field):
        raise _not_a_fen(f"the castling field {_quoted(field)} repeats a letter")
    return "".join(letter for letter in CASTLING_LETTERS if letter in field)


def _check_en_passant(field: str) -> None:
    if field != "-" and not (len(field) == 2 and field[0] in FILES and field[1] in RANKS):
        raise _not_a_fen(f'the en passant square {_quoted(field)} is not "-" or a square')


def _listed(names: tuple[str, ...]) -> str:
    """ "a is", "a and b are", "a, b and c are"."""
    if len(names) == 1:
        return f"{names[0]} is"
    return ", ".join(names[:-1]) + f" and {names[-1]} are"


def _not_a_fen(reason: str) -> BadUserInputError:
    return BadUserInputError("fen", f"not a valid FEN: {reason}")


def _variant(reason: str) -> BadUserInputError:
    return BadUserInputError("fen", f"{VARIANTS_NOT_SUPPORTED} ({reason})")


def _quoted(text: str) -> str:
    """`text` in double quotes, with what cannot be printed as an escape."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return f'"{shown}"'


@dataclass(frozen=True)
class Limits:
    """The bounds a request must respect (from the API settings)."""

    max_moves_to_return: int
    max_time_limit: float
    max_depth_limit: int
    max_nodes_limit: int = 1_000_000_000


def parse_position(text: str) -> chess.Board:
    """The board `text` describes, if it is a position that can occur in a game."""
    text = text.strip()
    if not text:
        raise BadUserInputError("fen", "must not be empty")
    if len(text) > MAX_FEN_LENGTH:
        raise BadUserInputError("fen", f"longer than {MAX_FEN_LENGTH} characters")
    fen = read_fen(text)
    try:
        board = chess.Board(fen)
    except ValueError as exc:  # what the reader let through and python-chess did not
        raise BadUserInputError("fen", f"not a valid FEN ({exc})") from exc
    _check_counters(board)
    status = board.status()
    if _castling_dropped(fen, board):
        # python-chess silently drops some rights it cannot place; refuse them all alike.
        status |= chess.STATUS_BAD_CASTLING_RIGHTS
    if status & chess.STATUS_BAD_CASTLING_RIGHTS and _only_chess960(fen):
        raise _variant("castling rights with the king or a rook off its starting square")
    if status != chess.STATUS_VALID:
        reasons = [
            STATUS_REASONS.get(flag, (flag.name or "invalid").lower().replace("_", " "))
            for flag in chess.Status
            if flag and status & flag
        ]
        raise BadUserInputError("fen", "impossible position: " + "; ".join(reasons))
    return board


def _check_counters(board: chess.Board) -> None:
    """Refuse move counters no game can reach (python-chess takes any size)."""
    reasons = []
    if board.halfmove_clock > MAX_HALFMOVE_CLOCK:
        reasons.append(
            f"the halfmove clock is over {MAX_HALFMOVE_CLOCK}"
            " (the 75-move rule ends a game when it reaches 150)"
        )
    if board.fullmove_number > MAX_FULLMOVE_NUMBER:
        reasons.append(
            f"the fullmove number is over {MAX_FULLMOVE_NUMBER}"
            " (no game can last longer than 8,849 moves)"
        )
    if reasons:
        raise BadUserInputError("fen", "impossible move counters: " + "; ".join(reasons))


def _castling_dropped(fen: str, board: chess.Board) -> bool:
    """True when the full FEN asks for castling rights the parsed board does not have."""
    requested = fen.split()[2]
    return set(requested) - {"-"} != set(board.castling_xfen()) - {"-"}


def _only_chess960(fen: str) -> bool:
    """True when the full FEN's castling rights, wrong in standard chess, are right in
    Chess960 (a king between its rooks, away from the e-file, say)."""
    board = chess.Board(fen, chess960=True)
    return board.status() == chess.STATUS_VALID and not _castling_dropped(fen, board)


class Position(NamedTuple):
    """A position read from a FEN."""

    fen: str
    """The position as python-chess writes it."""
    key: str
    """Its normalised key, as Lichess keys cloud evaluations (`board.epd()`): pieces,
    side to move, the castling rights, en passant only where a capture is legal; no
    move counters. The position cache's key."""
    playable: bool
    """The side to move has a legal move."""


@functools.lru_cache(maxsize=4096)
def normalised(fen: str) -> Position:
    """The position `fen` describes; BadUserInputError if it is no real position.
    Cached (refusals are not): clients send the same positions again and again, every
    game starts alike, and reading a position is most of a submission's own work."""
    board = parse_position(fen)
    return Position(board.fen(), board.epd(), any(board.generate_legal_moves()))


def validate_submission(
    fen: str,
    num_moves_to_return: int,
    time_limit: float,
    depth_limit: int | None,
    limits: Limits,
    *,
    nodes_limit: int | None = None,
    fresh: bool = False,
) -> NewAnalysis:
    """A request ready to store; or BadUserInputError naming the bad field, or
    BadUserInputGroupError naming each when several are bad."""
    problems = limit_problems(num_moves_to_return, time_limit, depth_limit, nodes_limit, limits)
    try:
        position = normalised(fen)
    except BadUserInputError as problem:
        problems.insert(0, problem)  # the fields in the order of the input
    if problems:
        raise errors.refusal(problems)
    # A position without legal moves (mate or stalemate) has an empty result: no engine.
    return NewAnalysis(
        fen=position.fen,
        num_moves_to_return=num_moves_to_return,
        time_limit=time_limit,
        depth_limit=depth_limit,
        finished_result=None if position.playable else (),
        nodes_limit=nodes_limit,
        position_key=position.key,
        fresh=fresh,
    )


def limit_problems(
    num_moves_to_return: int,
    time_limit: float,
    depth_limit: int | None,
    nodes_limit: int | None,
    limits: Limits,
) -> list[BadUserInputError]:
    """What is wrong with the engine's limits of a request, one error per field."""
    problems: list[BadUserInputError] = []
    if not 1 <= num_moves_to_return <= limits.max_moves_to_return:
        problems.append(
            BadUserInputError(
                "numMovesToReturn", f"must be between 1 and {limits.max_moves_to_return}"
            )
        )
    if not (math.isfinite(time_limit) and 0 < time_limit <= limits.max_time_limit):
        problems.append(
            BadUserInputError(
                "timeLimit", f"must be more than 0 and at most {limits.max_time_limit:g} seconds"
            )
        )
    if depth_limit is not None and not 1 <= depth_limit <= limits.max_depth_limit:
        problems.append(
            BadUserInputError("depthLimit", f"must be between 1 and {limits.max_depth_limit}")
        )
    if nodes_limit is not None and not 1 <= nodes_limit <= limits.max_nodes_limit:
        problems.append(
            BadUserInputError("nodesLimit", f"must be between 1 and {limits.max_nodes_limit:,}")
        )
    return problems


def parse_id(value: str, field: str = "id") -> uuid.UUID:
    """The analysis id in `value`, or BadUserInputError."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise BadUserInputError(field, "not a valid analysis id (a UUID)") from exc
