"""Checks at the edge: a request is valid here or refused with BAD_USER_INPUT.

Positions are checked with python-chess directly (the API never starts an engine).
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass

import chess

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


@dataclass(frozen=True)
class Limits:
    """The bounds a request must respect (from the API settings)."""

    max_moves_to_return: int
    max_time_limit: float
    max_depth_limit: int


def parse_position(fen: str) -> chess.Board:
    """The board `fen` describes, if it is a position that can occur in a game."""
    fen = fen.strip()
    if not fen:
        raise BadUserInputError("fen", "must not be empty")
    if len(fen) > MAX_FEN_LENGTH:
        raise BadUserInputError("fen", f"longer than {MAX_FEN_LENGTH} characters")
    try:
        board = chess.Board(fen)
    except ValueError as exc:
        raise BadUserInputError("fen", f"not a valid FEN ({exc})") from exc
    _check_counters(board)
    status = board.status()
    if _castling_dropped(fen, board):
        # python-chess silently drops some rights it cannot place; refuse them all alike.
        status |= chess.STATUS_BAD_CASTLING_RIGHTS
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
    """True when the FEN asks for castling rights the parsed board does not have."""
    fields = fen.split()
    requested = fields[2] if len(fields) > 2 else "-"
    kept = board.castling_xfen()
    return set(requested) - {"-"} != set(kept) - {"-"}


@functools.lru_cache(maxsize=4096)
def normalised(fen: str) -> tuple[str, bool]:
    """The FEN of the position `fen` describes, as python-chess writes it, and whether
    the side to move has a legal move; BadUserInputError if it is no real position.
    Cached (refusals are not): clients send the same positions again and again, every
    game starts alike, and reading a position is most of a submission's own work."""
    board = parse_position(fen)
    return board.fen(), any(board.generate_legal_moves())


def validate_submission(
    fen: str,
    num_moves_to_return: int,
    time_limit: float,
    depth_limit: int | None,
    limits: Limits,
) -> NewAnalysis:
    """A request ready to store, or BadUserInputError naming the first bad field."""
    position, playable = normalised(fen)
    if not 1 <= num_moves_to_return <= limits.max_moves_to_return:
        raise BadUserInputError(
            "numMovesToReturn", f"must be between 1 and {limits.max_moves_to_return}"
        )
    if not (math.isfinite(time_limit) and 0 < time_limit <= limits.max_time_limit):
        raise BadUserInputError(
            "timeLimit", f"must be more than 0 and at most {limits.max_time_limit:g} seconds"
        )
    if depth_limit is not None and not 1 <= depth_limit <= limits.max_depth_limit:
        raise BadUserInputError("depthLimit", f"must be between 1 and {limits.max_depth_limit}")
    # A position without legal moves (mate or stalemate) has an empty result: no engine.
    return NewAnalysis(
        fen=position,
        num_moves_to_return=num_moves_to_return,
        time_limit=time_limit,
        depth_limit=depth_limit,
        finished_result=None if playable else (),
    )


def parse_id(value: str, field: str = "id") -> uuid.UUID:
    """The analysis id in `value`, or BadUserInputError."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise BadUserInputError(field, "not a valid analysis id (a UUID)") from exc
