"""A game's review, as Lichess computes it: per move an evaluation, the best line, a judgment,
an accuracy and a centipawn loss; per side the accuracy, the ACPL and the judgments counted.

The input is the moves played and the engine's verdict on every position of the game
(`positions[i]` before `moves[i]`, the last one after the last move), all White's view.
The numbers follow lila (`modules/fishnet/src/main/AnalysisBuilder.scala`,
`modules/tree/src/main/{Analysis,Info,Advice}.scala`,
`modules/analyse/src/main/{AccuracyPercent,AccuracyCP}.scala`); the arithmetic lives in
`api.games.accuracy`. How lila pairs the positions, and where it surprises:

- **Before the first move, +0.15.** lila puts `Cp.initial` (+15, White's view) before the
  first move of *every* game, from the standard start or from any FEN: the first move's
  judgment, comment, loss and accuracy are measured from +0.15, even when the engine
  says the start position is +5 or -5. The engine's verdict on the start position only
  gives the first move's best line.
- **Per-move accuracy of a game that Black starts** measures Black's first move from +15
  seen from *Black's* side (`fromEvalsAndPov` inverts the evaluations, then prepends the
  uninverted initial one), while its loss and the game accuracy use +15 White's view.
- **A judgment needs a best line.** lila keeps the best line of the position before a move
  only when its first move is not the move played; a move without it (the engine's own
  choice, or no line) is never judged, however far the evaluation falls between the two
  searches.
- **Judgments read raw centipawns** (winning chances of +2500, not of the ±1000 that
  Win%, accuracy and loss use). Cp → cp: the mover's winning chances fall by ≥ 0.3
  Blunder, ≥ 0.2 Mistake, ≥ 0.1 Inaccuracy. With a mate on either side, seen from the
  mover: cp → mated is "Checkmate is now unavoidable" (Inaccuracy below -999 cp before,
  Mistake below -700, else Blunder); mating → cp is "Lost forced checkmate sequence"
  (Inaccuracy above 999 cp after, Mistake above 700, else Blunder); mating → mated is
  the same, always a Blunder (its cp counts as 0). Anything else has no judgment: a
  longer mate ("MateDelayed" exists in lila and is never judged), escaping a mate, or
  finding one.
- **Comments** are lila's PGN annotations (`makeComment(withEval = true, withBestMove =
  true)`): `(0.30 → -1.20) Mistake. Nf3 was best.`; evaluations White's view in pawns
  with two decimals, no plus sign, or `Mate in N` with N unsigned. (lila's JSON export
  leaves out the evaluations: `Mistake. Nf3 was best.`)
- **The mating move gets nothing.** lila drops a checkmated final position before it
  pairs positions, so the mating move has no evaluation, best line, judgment, accuracy
  or loss, and counts in neither the ACPL nor the game accuracy. (lila's newest builder
  keeps that position when the fishnet client reports `mateGiven`, hides its evaluation
  and counts the move as reaching ±1000; this module follows the dropping builder, as
  the design asks.)
- **A final stalemate** is the engine's 0.00 (Stockfish says `cp 0` when nothing can
  move); the stalemating move is judged like any other, so throwing away +8 is a Blunder.
- **Side summaries, both or none**: lila shows a game accuracy only when both sides have
  an analysed move, so a one-move game (or two moves ending in mate) has no summaries.

Partial input is normal: the review is recomputed as positions finish. A ply's numbers
appear as soon as the positions they need are known: its evaluation needs the position
after; its best line the position before; its judgment, accuracy and loss both (the
first move needs only the position after, and the one before for its best line). lila's
partial analyses are coarser (a move is blank until the positions on both sides of the
previous move are known too); once every position is known the two agree. The side
summaries wait for every position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from api import lichess
from api.games import accuracy

LINE_MAX_PLIES = 12
"""lila `Info.LineMaxPlies`: the best line is cut to this many plies."""

WINNING_CHANCE_JUDGMENTS = ((0.3, "BLUNDER"), (0.2, "MISTAKE"), (0.1, "INACCURACY"))
"""lila `CpAdvice`: the fall of the mover's winning chances (-1..+1) that earns each name."""

LABELS = {"INACCURACY": "Inaccuracy", "MISTAKE": "Mistake", "BLUNDER": "Blunder"}
"""How lila writes each judgment in its comments."""

MATE_CREATED = "Checkmate is now unavoidable"
"""lila `MateCreated`: the mover, not mated before, is now."""
MATE_LOST = "Lost forced checkmate sequence"
"""lila `MateLost`: the mover had a forced mate and has it no more."""


@dataclass(frozen=True)
class Score:
    """An evaluation, White's point of view (lila prefers the centipawns when both are set)."""

    centipawns: int | None
    """Centipawns, + when White is better; None with a mate."""
    mate: int | None
    """Moves (not plies) to mate, + when White mates."""


@dataclass(frozen=True)
class Position:
    """The engine's verdict on one position of the game."""

    score: Score | None
    """The best line's score; None while unknown (not analysed yet, or failed)."""
    best_move_uci: str | None
    """The first move of the best line."""
    best_move_san: str | None
    best_line_san: tuple[str, ...]
    checkmate: bool = False
    """The side to move is checkmated: known without a search."""
    stalemate: bool = False
    """The side to move has no move and is not in check: 0.00, known without a search."""


@dataclass(frozen=True)
class Move:
    """One ply played."""

    ply: int
    """1-based."""
    move_number: int
    white: bool
    """True when White played it."""
    uci: str
    san: str
    fen_before: str


@dataclass(frozen=True)
class Judgment:
    """lila's advice on a move."""

    name: str
    """INACCURACY, MISTAKE or BLUNDER."""
    comment: str
    """As lila prints it, e.g. `(0.30 → -1.20) Mistake. Nf3 was best.`"""


@dataclass(frozen=True)
class PlyReview:
    """One move's numbers; None where lila shows none or the positions needed are unknown."""

    move: Move
    eval_after: Score | None
    """White's view; None for the mating move (lila drops the mated position)."""
    win_percent_after: float | None
    """White's Win% of `eval_after`."""
    best_move_uci: str | None
    """In the position before; only when the move played was not the best (as lila)."""
    best_move_san: str | None
    best_line_san: tuple[str, ...] | None
    """At most `LINE_MAX_PLIES` plies."""
    judgment: Judgment | None
    accuracy: float | None
    """lila `AccuracyPercent.fromEvalsAndPov`: 0..100, from the mover's Win% before and after."""
    centipawn_loss: int | None
    """lila `AccuracyCP.diffsList`: the fall of the mover's ceiled evaluation, never negative."""


@dataclass(frozen=True)
class SideSummary:
    """One side's totals, as lila's analysis summary shows them."""

    accuracy: float
    """lila's game accuracy (Lichess displays it rounded to an integer)."""
    acpl: int
    """Average centipawn loss, rounded half up."""
    inaccuracies: int
    mistakes: int
    blunders: int


@dataclass(frozen=True)
class Review:
    plies: list[PlyReview]
    """One per move played, in order."""
    white: SideSummary | None
    """None until every position is known, and when lila shows no game accuracy."""
    black: SideSummary | None


INITIAL = Score(centipawns=accuracy.INITIAL_CENTIPAWNS, mate=None)
"""lila `Info.start`: the evaluation before the first move, whatever the position."""


def review(moves: Sequence[Move], positions: Sequence[Position]) -> Review:
    """The review of a game: `positions[i]` is the position before `moves[i]`,
    `positions[len(moves)]` the final one."""
    if len(positions) != len(moves) + 1:
        raise ValueError(
            f"{len(moves)} moves need {len(moves) + 1} positions, not {len(positions)}"
        )
    scores = [score_of(position) for position in positions]
    # lila drops a checkmated final position before pairing: the mating move has no "after".
    mating = len(moves) - 1 if is_checkmate(positions[-1]) else None
    plies = [
        review_ply(
            move,
            positions[index],
            INITIAL if index == 0 else scores[index],
            scores[index + 1],
            first=index == 0,
            mating=index == mating,
        )
        for index, move in enumerate(moves)
    ]
    if any(
        score is None and not is_checkmate(p) for score, p in zip(scores, positions, strict=True)
    ):
        return Review(plies=plies, white=None, black=None)
    white, black = summarise(moves, plies)
    return Review(plies=plies, white=white, black=black)


def score_of(position: Position) -> Score | None:
    """A position's evaluation, White's view, or None when unknown or checkmated."""
    if position.stalemate:
        return Score(centipawns=0, mate=None)
    score = position.score
    if is_checkmate(position) or score is None:
        return None
    if score.centipawns is None and score.mate is None:
        return None
    return score


def is_checkmate(position: Position) -> bool:
    """lila's `isCheckmate`: the flag, or the engine's `mate 0`."""
    score = position.score
    return position.checkmate or (
        score is not None and score.centipawns is None and score.mate == 0
    )


def review_ply(
    move: Move,
    position_before: Position,
    before: Score | None,
    after: Score | None,
    *,
    first: bool,
    mating: bool,
) -> PlyReview:
    """One move's numbers from the evaluations before (+0.15 for the first move) and after;
    a number that needs an unknown evaluation is None."""
    if mating:
        return PlyReview(move, None, None, None, None, None, None, None, None)
    line = best_line(move, position_before)
    judgment, move_accuracy, centipawn_loss = None, None, None
    if before is not None and after is not None:
        judgment = None if line is None else judge(move.white, before, after, line[0])
        move_accuracy = accuracy_of(move.white, before, after, first=first)
        centipawn_loss = accuracy.centipawn_loss(ceiled(before), ceiled(after), move.white)
    return PlyReview(
        move=move,
        eval_after=after,
        win_percent_after=None if after is None else win_percent(after, white=True),
        best_move_uci=None if line is None else position_before.best_move_uci,
        best_move_san=None if line is None else line[0],
        best_line_san=line,
        judgment=judgment,
        accuracy=move_accuracy,
        centipawn_loss=centipawn_loss,
    )


def best_line(move: Move, position: Position) -> tuple[str, ...] | None:
    """The best line in SAN, when its first move is not the move played (lila keeps it then)."""
    best = position.best_move_uci
    if best is None or best == move.uci:
        return None
    line = position.best_line_san[:LINE_MAX_PLIES]
    first = position.best_move_san or (line[0] if line else best)
    return (first, *line[1:]) if line else (first,)


def judge(white: bool, before: Score, after: Score, best_san: str) -> Judgment | None:
    """lila `Advice(prev, info)`: `CpAdvice`, else `MateAdvice`, with its comment."""
    name, description = judgment_of(white, before, after)
    if name is None:
        return None
    evaluations = " → ".join(evaluation_comment(score) for score in (before, after))
    return Judgment(name=name, comment=f"({evaluations}) {description}. {best_san} was best.")


def judgment_of(white: bool, before: Score, after: Score) -> tuple[str | None, str]:
    """The judgment's name and the words lila writes for it, or (None, "")."""
    if before.centipawns is not None and after.centipawns is not None:
        fall = accuracy.winning_chances(before.centipawns) - accuracy.winning_chances(
            after.centipawns
        )
        fall = fall if white else -fall
        for threshold, name in WINNING_CHANCE_JUDGMENTS:
            if threshold <= fall:
                return name, LABELS[name]
        return None, ""
    sign = 1 if white else -1
    before_cp = sign * (before.centipawns or 0)
    after_cp = sign * (after.centipawns or 0)
    before_mate = None if before.mate is None else sign * before.mate
    after_mate = None if after.mate is None else sign * after.mate
    if before_mate is None and after_mate is not None and after_mate < 0:
        # MateCreated: the mover now gets mated.
        return _tier(before_cp < -999, before_cp < -700), MATE_CREATED
    if before_mate is not None and before_mate > 0 and (after_mate is None or after_mate < 0):
        # MateLost: the mover had a mate and lost it (to a cp, or to being mated: cp 0).
        return _tier(after_cp > 999, after_cp > 700), MATE_LOST
    return None, ""


def _tier(inaccuracy: bool, mistake: bool) -> str:
    if inaccuracy:
        return "INACCURACY"
    return "MISTAKE" if mistake else "BLUNDER"


def evaluation_comment(score: Score) -> str:
    """lila `Info.evalComment`: pawns with two decimals (`showPawns`), or `Mate in N`."""
    if score.centipawns is not None:
        return f"{score.centipawns / 100:.2f}"
    return f"Mate in {abs(score.mate or 0)}"


def accuracy_of(white: bool, before: Score, after: Score, *, first: bool) -> float:
    """lila `fromEvalsAndPov`: from the mover's Win% before and after the move. The initial
    +15 is not turned to Black's view (a lila quirk, seen only when Black moves first)."""
    win_before = win_percent(before, white=white or first)
    return accuracy.move_accuracy(win_before, win_percent(after, white=white))


def win_percent(score: Score, *, white: bool) -> float:
    """Win% of a score (White's view) for White, or for Black."""
    sign = 1 if white else -1
    centipawns = None if score.centipawns is None else sign * score.centipawns
    mate = None if score.mate is None else sign * score.mate
    return lichess.win_percent(centipawns, mate)


def ceiled(score: Score) -> int:
    """The score as lila counts it for loss and game accuracy: ±1000 at most, a mate ±1000."""
    return accuracy.ceiled_centipawns(score.centipawns, score.mate)


def summarise(
    moves: Sequence[Move], plies: Sequence[PlyReview]
) -> tuple[SideSummary | None, SideSummary | None]:
    """Both sides' summaries of a complete review, or none where lila shows no accuracy."""
    evaluations = [ceiled(ply.eval_after) for ply in plies if ply.eval_after is not None]
    game = accuracy.game_accuracy(moves[0].white, evaluations) if moves else None
    if game is None:
        return None, None
    white = side_summary([ply for ply in plies if ply.move.white], game[0])
    black = side_summary([ply for ply in plies if not ply.move.white], game[1])
    if white is None or black is None:
        return None, None
    return white, black


def side_summary(plies: Sequence[PlyReview], game_accuracy: float) -> SideSummary | None:
    """One side's summary from its plies, or None when it has no analysed move."""
    acpl = accuracy.average_centipawn_loss(
        [ply.centipawn_loss for ply in plies if ply.centipawn_loss is not None]
    )
    if acpl is None:
        return None
    names = [ply.judgment.name for ply in plies if ply.judgment is not None]
    return SideSummary(
        accuracy=game_accuracy,
        acpl=acpl,
        inaccuracies=names.count("INACCURACY"),
        mistakes=names.count("MISTAKE"),
        blunders=names.count("BLUNDER"),
    )
