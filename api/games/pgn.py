"""Reading a game: a PGN as people paste it, or a start position and a list of moves.

What a PGN may hold (one game):

- tag pairs (`[White "Carlsen, Magnus"]`), with `\\"` and `\\\\` escapes; a `FEN` tag
  starts the game from that position (`SetUp "1"` goes with it);
- a `Variant` tag only if it names standard chess (`Standard`, `Chess`, `From Position`,
  `Normal`, `Classical`);
- comments (`{...}`, over several lines too, and `;` to the end of the line), `%` escape
  lines, NAGs (`$1`) and annotation glyphs (`!?`, `Nf3+!`), variations in parentheses,
  nested or not (read for their form, never played);
- move numbers with or without spaces and dots (`1.e4`, `1. e4`, `1...e5`, `1… e5`);
  moves in SAN, castling as `O-O`/`0-0`/`O-O-O`/`0-0-0`;
- a result (`1-0`, `0-1`, `1/2-1/2`, `*`) at the end; Windows or old Mac line endings,
  blank lines, indentation and a byte order mark.

python-chess's own reader (`chess.pgn.read_game`) is not used for the movetext: it skips
whatever it cannot read without a word (`Xf6` is read as `f6`, `Nf3` after an unclosed
`(` is never played, a blank line ends the game), and a refusal here must say what is
wrong. So the text is split into tokens here, strictly, and each move is played with
python-chess (`Board.parse_san`), which judges legality and ambiguity.

Every refusal is a `BadUserInputError` with the field the text came from (`pgn`, or
`moves` and `initialFen` for `from_moves`); one problem is reported, the first found.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import chess

from api import validation
from api.errors import BadUserInputError


@dataclass(frozen=True)
class PlayedMove:
    """One move of a game, with the positions around it."""

    ply: int
    """Its place in the game: 1 for the first move played, whoever plays it."""
    move_number: int
    """The fullmove number of the position it is played in (`6` in `6... Nf3`)."""
    white: bool
    """True when White plays it."""
    uci: str
    """The move in UCI (`e1g1` for White's short castling)."""
    san: str
    """The move in SAN as python-chess writes it (`O-O`, `Nxe5+`), whatever the input said."""
    fen_before: str
    """The position it is played in."""
    epd_after: str
    """The position it leads to, as `board.epd()` keys it (no move counters; en passant
    only where a capture is legal): the key of opening names and of the position cache."""


@dataclass(frozen=True)
class ParsedGame:
    """A game read and checked: every move legal, at most `max_plies` of them."""

    headers: list[tuple[str, str]]
    """The tag pairs of a PGN, in their order, values unescaped; none for `from_moves`."""
    initial_fen: str
    """The start position, as python-chess writes it."""
    moves: list[PlayedMove]
    """The moves of the main line, in order; variations are not played."""
    final_fen: str
    """The position after the last move (the start position if there are none)."""

    def epds(self) -> list[str]:
        """The key (`board.epd()`) of each position of the game, the start first: what
        `api.games.openings.opening_of` takes."""
        return [chess.Board(self.initial_fen).epd()] + [move.epd_after for move in self.moves]


STANDARD_VARIANTS = frozenset({"standard", "chess", "from position", "normal", "classical"})
"""`Variant` tag values that mean standard chess (case aside); python-chess's own names
of standard chess, less its "Illegal"."""

TAG = re.compile(r'\[\s*([A-Za-z0-9][A-Za-z0-9_+#=:-]*)\s*"(.*)"\s*\]')
"""A tag pair, on a line of its own (python-chess's tag names). The value runs to the
last quote, so a quote left unescaped inside it does no harm; escapes are undone."""

END = r"(?=[\s(){};$]|\Z)"
"""What may follow a move, a result, a NAG or a glyph: a separator or the end."""

TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
    |(?P<header>^\[.*$)
    |(?P<escape>^%.*$)
    |(?P<comment>\{{[^}}]*\}})
    |(?P<unclosed>\{{)
    |(?P<line_comment>;.*$)
    |(?P<result>(?:1-0|0-1|1/2-1/2|\*){END})
    |(?P<number>\d+(?:\s*[.…]+|(?=\s|\Z))|[.…]+)
    |(?P<move>
        (?:[NBKRQ]?[a-h]?[1-8]?[-x]?[a-h][1-8](?:=?[NBRQnbrq])?
          |O-O(?:-O)?|0-0(?:-0)?|--|Z0)
        [+#]?[!?]{{0,2}}{END})
    |(?P<nag>\$\d+{END})
    |(?P<glyph>[!?]{{1,2}}{END})
    |(?P<open>\()
    |(?P<close>\))
    """,
    re.VERBOSE | re.MULTILINE,
)
"""The tokens of a PGN, tried in this order at each place; anything else is refused."""

NULL_MOVES = frozenset({"--", "Z0", "0000", "@@@@"})
UCI = re.compile(r"[a-h][1-8][a-h][1-8][nbrq]?")


class Token(NamedTuple):
    """A piece of a PGN's text."""

    kind: str
    """The name of the group of `TOKEN` that matched."""
    text: str
    line: int
    """The line it starts on, from 1."""


def parse_pgn(text: str, *, max_plies: int) -> ParsedGame:
    """The one game `text` holds; BadUserInputError (field `pgn`) naming what is wrong."""
    if not text.strip():
        raise BadUserInputError("pgn", "must not be empty")
    headers, moves = _read(_tokens(_tidied(text)))
    if len(moves) > max_plies:
        raise BadUserInputError("pgn", f"{max_plies} plies at most, the game has {len(moves)}")
    initial_fen = _start(headers)
    board = chess.Board(initial_fen)
    played = _play(board, [move.text.rstrip("!?") for move in moves], "pgn", _read_san)
    return ParsedGame(headers, initial_fen, played, board.fen())


def from_moves(initial_fen: str | None, moves: Sequence[str], *, max_plies: int) -> ParsedGame:
    """The game of `moves` (each in UCI or SAN) played from `initial_fen` (the standard
    start when None; `startpos` is read as it too); BadUserInputError with field
    `initialFen` or `moves` naming what is wrong."""
    fen = chess.STARTING_FEN
    if initial_fen is not None:
        try:
            fen = validation.normalised(initial_fen).fen
        except BadUserInputError as exc:
            raise BadUserInputError("initialFen", _reason(exc)) from exc
    if len(moves) > max_plies:
        raise BadUserInputError("moves", f"{max_plies} plies at most, the game has {len(moves)}")
    board = chess.Board(fen)
    played = _play(board, [move.strip() for move in moves], "moves", _read_uci_or_san)
    return ParsedGame([], fen, played, board.fen())


def _tidied(text: str) -> str:
    """`text` with `\\n` line endings and each line stripped (indented tag pairs are
    still tag pairs); the lines keep their numbers."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.strip() for line in lines)


def _tokens(text: str) -> Iterator[Token]:
    """The tokens of `text` (tidied), or BadUserInputError at the first that is none."""
    position, line = 0, 1
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise BadUserInputError("pgn", f"line {line}: {_unreadable(text, position)}")
        if match.lastgroup == "unclosed":
            raise BadUserInputError("pgn", f"line {line}: a comment opened here is not closed")
        yield Token(match.lastgroup, match.group(), line)
        line += match.group().count("\n")
        position = match.end()


def _unreadable(text: str, position: int) -> str:
    """Why the text at `position` is no token."""
    word = re.match(r"[^\s(){};$]+|.", text[position:])
    shown = _shown(word.group() if word else text[position])
    if shown == '"}"':
        return "a } closes no comment"
    return f"{shown} is not a move, a move number, a comment, a NAG or a result"


def _read(tokens: Iterator[Token]) -> tuple[list[tuple[str, str]], list[Token]]:
    """The tag pairs and the main line's moves of the one game `tokens` hold."""
    headers: list[tuple[str, str]] = []
    moves: list[Token] = []
    opened: list[int] = []  # the line of each open variation
    result: Token | None = None
    movetext = False
    for token in tokens:
        if token.kind in ("space", "escape", "comment", "line_comment"):
            continue
        if token.kind == "header":
            if movetext:
                raise BadUserInputError(
                    "pgn",
                    f"more than one game: headers at line {token.line} follow moves;"
                    " send one game at a time",
                )
            headers.append(_header(token, headers))
            continue
        movetext = True
        if token.kind == "open":
            opened.append(token.line)
        elif token.kind == "close":
            if not opened:
                raise BadUserInputError("pgn", f"line {token.line}: a ) closes no variation")
            opened.pop()
        elif opened:
            continue  # a variation is read for its form only
        elif token.kind == "result":
            if result is not None:
                raise BadUserInputError(
                    "pgn",
                    f'line {token.line}: a second result "{token.text}" after'
                    f' "{result.text}" (line {result.line})',
                )
            result = token
        elif token.kind == "move":
            if result is not None:
                raise BadUserInputError(
                    "pgn",
                    f'more than one game: moves follow the result "{result.text}"'
                    f" (line {result.line}); send one game at a time",
                )
            moves.append(token)
    if opened:
        raise BadUserInputError("pgn", f"line {opened[-1]}: a variation opened here is not closed")
    return headers, moves


def _header(token: Token, before: list[tuple[str, str]]) -> tuple[str, str]:
    """The tag pair on the line of `token`."""
    match = TAG.fullmatch(token.text)
    if match is None:
        raise BadUserInputError(
            "pgn",
            f'line {token.line}: not a header like [White "Name"]: {_shown(token.text)[1:-1]}',
        )
    name, value = match.group(1), re.sub(r"\\(.)", r"\1", match.group(2))
    if any(name == known for known, _ in before):
        raise BadUserInputError("pgn", f'line {token.line}: the header "{name}" is given twice')
    return name, value


def _start(headers: list[tuple[str, str]]) -> str:
    """The FEN of the start position the tag pairs give, checked."""
    tags = dict(headers)
    variant = tags.get("Variant")
    if variant is not None and variant.strip().casefold() not in STANDARD_VARIANTS:
        raise BadUserInputError(
            "pgn",
            f"{validation.VARIANTS_NOT_SUPPORTED}"
            f" (the Variant header says {_shown(variant)}; only standard chess is analysed)",
        )
    fen = tags.get("FEN")
    if fen is None:
        if tags.get("SetUp", "0").strip() == "1":
            raise BadUserInputError(
                "pgn", 'the SetUp header is "1" but no FEN header gives the position'
            )
        return chess.STARTING_FEN
    try:
        return validation.normalised(fen).fen
    except BadUserInputError as exc:
        raise BadUserInputError("pgn", f"the FEN header: {_reason(exc)}") from exc


def _play(
    board: chess.Board,
    texts: Sequence[str],
    field: str,
    read: Callable[[chess.Board, str], chess.Move],
) -> list[PlayedMove]:
    """Play each move of `texts` on `board`, read by `read`; BadUserInputError (under
    `field`) naming the ply, the move and the position of the first that cannot be."""
    played: list[PlayedMove] = []
    for ply, text in enumerate(texts, start=1):
        move = _legal(board, text, read, functools.partial(_unplayable, field, board, ply, text))
        move_number, white, fen_before = board.fullmove_number, board.turn, board.fen()
        san = board.san_and_push(move)
        played.append(PlayedMove(ply, move_number, white, move.uci(), san, fen_before, board.epd()))
    return played


def _legal(
    board: chess.Board,
    text: str,
    read: Callable[[chess.Board, str], chess.Move],
    refused: Callable[[str], BadUserInputError],
) -> chess.Move:
    """The legal move `text` stands for on `board`, or `refused(why there is none)`."""
    if board.is_seventyfive_moves():
        raise refused(
            "the game was already over: 75 moves by each side without a capture or a pawn"
            " move end it (the 75-move rule)"
        )
    if not text:
        raise refused("an empty move")
    if text in NULL_MOVES:
        raise refused("a null move; only moves played on the board are read")
    try:
        return read(board, text)
    except chess.AmbiguousMoveError as exc:
        candidates = " or ".join(_candidates(board, text))
        raise refused(
            f"ambiguous move (it could be {candidates}) in position {board.fen()}"
        ) from exc
    except chess.IllegalMoveError as exc:
        raise refused(f"illegal move {_outcome(board)}in position {board.fen()}") from exc
    except chess.InvalidMoveError as exc:
        raise refused("not a move in SAN or UCI") from exc


def _read_san(board: chess.Board, text: str) -> chess.Move:
    return board.parse_san(text)


def _read_uci_or_san(board: chess.Board, text: str) -> chess.Move:
    """The move `text` gives in UCI (tried first) or in SAN."""
    if UCI.fullmatch(text):
        try:
            return board.parse_uci(text)
        except chess.IllegalMoveError:
            # A UCI-shaped move may still be SAN ("e2e4" is both); say "illegal" below.
            pass
    return board.parse_san(text)


def _candidates(board: chess.Board, san: str) -> list[str]:
    """The legal moves an ambiguous SAN move may stand for, in SAN."""
    match = chess.SAN_REGEX.match(san)
    if match is None:
        return []
    piece = chess.PIECE_SYMBOLS.index(match.group(1).lower()) if match.group(1) else chess.PAWN
    to_square = chess.parse_square(match.group(4))
    fits = [
        move
        for move in board.legal_moves
        if move.to_square == to_square
        and board.piece_type_at(move.from_square) == piece
        and match.group(2) in (None, chess.FILE_NAMES[chess.square_file(move.from_square)])
        and match.group(3) in (None, chess.RANK_NAMES[chess.square_rank(move.from_square)])
    ]
    return sorted(board.san(move) for move in fits)


def _outcome(board: chess.Board) -> str:
    """Why no move can be played, when the game is over: "(... is checkmated) "."""
    if board.is_checkmate():
        side = "White" if board.turn == chess.WHITE else "Black"
        return f"(the game is over: {side} is checkmated) "
    if board.is_stalemate():
        return "(the game is over: stalemate) "
    return ""


def _unplayable(
    field: str, board: chess.Board, ply: int, text: str, reason: str
) -> BadUserInputError:
    """`ply 12 (6... Nf3): <reason>`: the ply and the move as given, numbered as in a PGN."""
    dots = ". " if board.turn == chess.WHITE else "... "
    shown = _shown(text)[1:-1] or '""'
    return BadUserInputError(field, f"ply {ply} ({board.fullmove_number}{dots}{shown}): {reason}")


def _reason(error: BadUserInputError) -> str:
    """What `error` says, without its field."""
    return str(error).removeprefix(f"{error.extensions['field']}: ")


def _shown(text: str, most: int = 40) -> str:
    """`text` in double quotes, cut at `most` characters, what cannot be printed escaped."""
    cut = text if len(text) <= most else text[:most] + "…"
    return '"' + "".join(c if c.isprintable() else ascii(c)[1:-1] for c in cut) + '"'
