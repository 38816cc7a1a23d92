"""Checks at the edge: a request is valid here or refused with BAD_USER_INPUT.

Positions are checked with python-chess directly (the API never starts an engine).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

import chess

from api.errors import BadUserInputError
from db.submissions import NewAnalysis

MAX_FEN_LENGTH = 120
"""A legal FEN is under 90 characters; anything much longer is refused unread."""

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


def _castling_dropped(fen: str, board: chess.Board) -> bool:
    """True when the FEN asks for castling rights the parsed board does not have."""
    fields = fen.split()
    requested = fields[2] if len(fields) > 2 else "-"
    kept = board.castling_xfen()
    return set(requested) - {"-"} != set(kept) - {"-"}


def validate_submission(
    fen: str,
    num_moves_to_return: int,
    time_limit: float,
    depth_limit: int | None,
    limits: Limits,
) -> NewAnalysis:
    """A request ready to store, or BadUserInputError naming the first bad field."""
    board = parse_position(fen)
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
    finished = () if not any(board.generate_legal_moves()) else None
    return NewAnalysis(
        fen=board.fen(),
        num_moves_to_return=num_moves_to_return,
        time_limit=time_limit,
        depth_limit=depth_limit,
        finished_result=finished,
    )


def parse_id(value: str, field: str = "id") -> uuid.UUID:
    """The analysis id in `value`, or BadUserInputError."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise BadUserInputError(field, "not a valid analysis id (a UUID)") from exc
