"""GraphQL types of games, built from a stored game and the review of its positions."""

from __future__ import annotations

import enum
from datetime import datetime

import chess
import strawberry

from api.games import review
from api.types import AnalysisStatus, game_over
from db import games


@strawberry.enum(description="Which side played a move.")
class Color(enum.Enum):
    WHITE = "white"
    BLACK = "black"


@strawberry.enum(description="How bad a move was, as Lichess judges it.")
class JudgmentName(enum.Enum):
    INACCURACY = "INACCURACY"
    MISTAKE = "MISTAKE"
    BLUNDER = "BLUNDER"


@strawberry.type(description="One tag pair of the PGN, e.g. White, Black, Event.")
class PgnHeader:
    name: str
    value: str


@strawberry.type(description="The opening the game reaches (the last named position).")
class Opening:
    eco: str = strawberry.field(description='Its ECO code, e.g. "C50".')
    name: str = strawberry.field(description='e.g. "Italian Game: Giuoco Pianissimo".')


@strawberry.type(description="An evaluation from White's point of view.")
class Eval:
    centipawn_score: int | None = strawberry.field(description="null when mateScore is set.")
    mate_score: int | None = strawberry.field(
        description="Moves to mate; positive when White mates."
    )
    win_percent: float = strawberry.field(description="White's chance of winning (Lichess's Win%).")


@strawberry.type(description="A move judged as Lichess judges it.")
class Judgment:
    name: JudgmentName
    comment: str = strawberry.field(
        description='As Lichess prints it: "(0.30 → -1.20) Mistake. Nf3 was best."'
    )


@strawberry.type(description="One move played, and what the engine says of it.")
class PlyAnalysis:
    ply: int = strawberry.field(description="1 for White's first move.")
    move_number: int
    color: Color
    san: str
    uci: str
    fen_before: str = strawberry.field(description="The position the move was played in.")
    eval: Eval | None = strawberry.field(
        description=(
            "The evaluation after the move; null until known, and for a move that mates"
            " (Lichess shows none)."
        )
    )
    best_move: str | None = strawberry.field(
        description=(
            "The engine's best move in the position before (UCI), when it is not the move played."
        )
    )
    best_move_san: str | None
    best_line_san: list[str] | None = strawberry.field(
        description=(
            "The engine's best line from the position before, when the move played is not"
            " its first move."
        )
    )
    judgment: Judgment | None = strawberry.field(
        description="INACCURACY, MISTAKE or BLUNDER with Lichess's comment; null for a good move."
    )
    accuracy: float | None = strawberry.field(description="Lichess's move accuracy, 0..100.")
    centipawn_loss: int | None = strawberry.field(
        description="Centipawns the move lost (evaluations clamped to ±1000)."
    )


@strawberry.type(description="One side's numbers over the game, as Lichess computes them.")
class SideSummary:
    accuracy: float = strawberry.field(description="Lichess's game accuracy, 0..100.")
    acpl: int = strawberry.field(description="Average centipawn loss.")
    inaccuracies: int
    mistakes: int
    blunders: int


@strawberry.type(description="How many of the game's positions are analysed.")
class Progress:
    done: int
    total: int


@strawberry.type(description="A game reviewed position by position.")
class GameAnalysis:
    id: strawberry.ID
    status: AnalysisStatus
    error: str | None = strawberry.field(description="Why the review FAILED.")
    headers: list[PgnHeader]
    initial_fen: str
    opening: Opening | None
    plies: list[PlyAnalysis] = strawberry.field(
        description="One per move played, in order; their numbers fill in as positions finish."
    )
    white: SideSummary | None = strawberry.field(description="null until DONE.")
    black: SideSummary | None = strawberry.field(description="null until DONE.")
    progress: Progress
    num_moves_to_return: int
    time_limit: float
    depth_limit: int | None
    nodes_limit: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_game(cls, game: games.Game) -> GameAnalysis:
        reviewed = (
            review.review(moves_of(game), positions_of(game))
            if game.positions
            else review.Review(plies=[], white=None, black=None)
        )
        done = game.done == len(game.positions)
        return cls(
            id=strawberry.ID(str(game.id)),
            status=AnalysisStatus.from_model(game.status),
            error=game.error,
            headers=[PgnHeader(name=name, value=value) for name, value in game.headers],
            initial_fen=game.initial_fen,
            opening=None
            if game.opening is None
            else Opening(eco=game.opening[0], name=game.opening[1]),
            plies=[ply_analysis(ply) for ply in reviewed.plies],
            white=side(reviewed.white) if done else None,
            black=side(reviewed.black) if done else None,
            progress=Progress(done=game.done, total=len(game.positions)),
            num_moves_to_return=game.num_moves_to_return,
            time_limit=game.time_limit,
            depth_limit=game.depth_limit,
            nodes_limit=game.nodes_limit,
            created_at=game.created_at,
            started_at=game.started_at,
            finished_at=game.finished_at,
        )


def moves_of(game: games.Game) -> list[review.Move]:
    """The moves played, as the review reads them."""
    board = chess.Board(game.initial_fen)
    moves: list[review.Move] = []
    for ply, move in enumerate(game.moves, start=1):
        moves.append(
            review.Move(
                ply=ply,
                move_number=board.fullmove_number,
                white=board.turn == chess.WHITE,
                uci=move["uci"],
                san=move["san"],
                fen_before=move["fen_before"],
            )
        )
        board.push_uci(move["uci"])
    return moves


def positions_of(game: games.Game) -> list[review.Position]:
    """Each position's verdict, as the review reads it: its best line's score and moves."""
    fens = [move["fen_before"] for move in game.moves]
    board = chess.Board(game.initial_fen)
    for move in game.moves:
        board.push_uci(move["uci"])
    fens.append(board.fen())
    verdicts: list[review.Position] = []
    for position, fen in zip(game.positions, fens, strict=True):
        ended = game_over(fen)
        best = position.result[0] if position.result else None
        verdicts.append(
            review.Position(
                score=None if best is None else review.Score(best.centipawn_score, best.mate_score),
                best_move_uci=None if best is None else best.pv[0],
                best_move_san=None if best is None else best.pv_san[0],
                best_line_san=() if best is None else tuple(best.pv_san),
                checkmate=ended is not None and ended.name == "CHECKMATE",
                stalemate=ended is not None and ended.name == "STALEMATE",
            )
        )
    return verdicts


def ply_analysis(reviewed: review.PlyReview) -> PlyAnalysis:
    move = reviewed.move
    after = reviewed.eval_after
    judgment = reviewed.judgment
    return PlyAnalysis(
        ply=move.ply,
        move_number=move.move_number,
        color=Color.WHITE if move.white else Color.BLACK,
        san=move.san,
        uci=move.uci,
        fen_before=move.fen_before,
        eval=None
        if after is None or reviewed.win_percent_after is None
        else Eval(
            centipawn_score=after.centipawns,
            mate_score=after.mate,
            win_percent=round(reviewed.win_percent_after, 2),
        ),
        best_move=reviewed.best_move_uci,
        best_move_san=reviewed.best_move_san,
        best_line_san=None if reviewed.best_line_san is None else list(reviewed.best_line_san),
        judgment=None
        if judgment is None
        else Judgment(name=JudgmentName(judgment.name), comment=judgment.comment),
        accuracy=None if reviewed.accuracy is None else round(reviewed.accuracy, 2),
        centipawn_loss=reviewed.centipawn_loss,
    )


def side(summary: review.SideSummary | None) -> SideSummary | None:
    if summary is None:
        return None
    return SideSummary(
        accuracy=round(summary.accuracy, 2),
        acpl=summary.acpl,
        inaccuracies=summary.inaccuracies,
        mistakes=summary.mistakes,
        blunders=summary.blunders,
    )


@strawberry.input(description="A game to review: a PGN, or a start position and moves.")
class SubmitGameAnalysisInput:
    pgn: str | None = strawberry.field(
        default=None,
        description=(
            "One game in PGN, as people paste it: headers (SetUp/FEN for another start),"
            " comments, NAGs and variations (ignored), a result. Give this or moves."
        ),
    )
    initial_fen: str | None = strawberry.field(
        default=None, description="With moves: the start position (default: the standard one)."
    )
    moves: list[str] | None = strawberry.field(
        default=None, description="With initialFen: the moves played, in UCI or SAN."
    )
    num_moves_to_return: int = strawberry.field(
        default=1, description="Lines per position (the best one judges the moves)."
    )
    time_limit: float = strawberry.field(default=1.0, description="Seconds per position.")
    depth_limit: int | None = strawberry.field(default=None, description="Plies per position.")
    nodes_limit: int | None = strawberry.field(default=None, description="Nodes per position.")


@strawberry.type(description="One game in a listing, and where the listing stands.")
class GameAnalysisEdge:
    node: GameAnalysis
    cursor: str
