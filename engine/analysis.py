"""Turning a claimed job into engine limits, and the engine's reports into result lines.

Stockfish deepens its search one iteration at a time and reports every line at the end
of each iteration. A search stopped by the clock ends in the middle of an iteration, and
the last report then carries that unfinished iteration's lines: their scores are the
newest, but a line's moves may stop after one or two (the engine had not yet gathered
more when it was stopped). Such a line takes the moves an earlier report gave the same
first move when its own are only their beginning, or when it merely repeats that
report's score (`Reports`). A search that reached its depth limit finished its last
iteration: its lines are left as reported. A nodes limit stops a search as the clock
does, in the middle of an iteration.

Every line carries the engine's win, draw and loss chances (`UCI_ShowWDL`, turned on by
`engine.pool`) beside its score, and the search's depth, nodes and time go with the
result (`Analysed`), for the position cache to compare searches by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import chess
import chess.engine

from db.claims import ClaimedJob, Searched
from db.models import ResultLine

if TYPE_CHECKING:
    from engine.progress import Publisher

CLOCK_STEP = 0.001
"""The engine reports the time it has searched in whole milliseconds."""


WHITE_MATES = (1000, 0, 0)
"""The win, draw and loss chances of a line on which White mates, from White's view."""
BLACK_MATES = (0, 0, 1000)
"""The same, on which Black mates."""


def limit_for(job: ClaimedJob) -> chess.engine.Limit:
    """Stop at whichever of the job's limits comes first."""
    return chess.engine.Limit(time=job.time_limit, depth=job.depth_limit, nodes=job.nodes_limit)


class Analysed(NamedTuple):
    """What a finished search gives: its lines and how far it went."""

    lines: list[ResultLine]
    """Best first."""
    searched: Searched | None
    """How far the search went; None when it gave no lines (nothing to cache)."""


class Kept(NamedTuple):
    """The line kept for a first move: the latest earlier report of it, and its moves."""

    report: chess.engine.InfoDict
    moves: list[chess.Move]
    """The report's moves, or the longer line kept before them when they are only its
    beginning."""


class Reports:
    """The engine's reports during one search: the latest for each line, and for each
    first move the line an earlier report gave it.

    `see` runs for every report the engine sends, so it only swaps references: the
    latest report of each rank, and one kept line per first move (`Kept`).

    For a search the clock stopped (`lines(cut_short=True)`), a final line takes the
    moves of the line kept for its first move when

    - its moves are only the beginning of the kept line's: the engine was stopped
      before it gathered the rest;
    - or it repeats the kept report's score and depth: the stopped iteration had not
      finished that move, so the engine gave its earlier score again, and the moves that
      score was found with are the kept line's (the final report's may already come from
      the unfinished search).

    Otherwise a final line keeps its own moves, however short: it departs from the kept
    line after its first move with a score of its own, found on those moves (typically a
    reply that refuted the earlier line); the earlier continuation would not explain
    that score. A first move no earlier report gave has nothing to be completed from.
    Score and depth are always the final report's.

    Reports of a bound (a score that fell outside the search window) are never kept: the
    engine sends them with the first move or two only.
    """

    def __init__(self) -> None:
        self._latest: dict[int, chess.engine.InfoDict] = {}
        """The latest report with moves, by rank (1 for the best line)."""
        self._earlier: dict[chess.Move, Kept] = {}
        """For each first move, the line of the latest earlier report of it."""

    def see(self, info: chess.engine.InfoDict) -> None:
        """Take in one report; one without moves (progress, a message) is passed over."""
        if not info.get("pv"):
            return
        rank = info.get("multipv", 1)
        superseded = self._latest.get(rank)
        self._latest[rank] = info
        if superseded is not None and not is_bound(superseded):
            self._keep(superseded)

    def _keep(self, report: chess.engine.InfoDict) -> None:
        moves = report["pv"]
        kept = self._earlier.get(moves[0])
        if kept is not None and continues(kept.moves, moves):
            moves = kept.moves
        self._earlier[moves[0]] = Kept(report, moves)

    def final(self) -> list[chess.engine.InfoDict]:
        """The latest report of each line, best first."""
        return [self._latest[rank] for rank in sorted(self._latest)]

    def lines(self, board: chess.Board, *, cut_short: bool) -> list[ResultLine]:
        """The result lines for `board`; with `cut_short` (the clock stopped the search
        in the middle of an iteration), final lines completed as the class says."""
        finals = self.final()
        if cut_short:
            finals = [self._completed(info) for info in finals]
        return lines_from_infos(board, finals)

    def _completed(self, info: chess.engine.InfoDict) -> chess.engine.InfoDict:
        moves = info["pv"]
        kept = self._earlier.get(moves[0])
        if kept is None or kept.moves == moves:
            return info
        if not (continues(kept.moves, moves) or repeats(info, kept.report)):
            return info
        completed = info.copy()
        completed["pv"] = kept.moves
        return completed


def is_bound(info: chess.engine.InfoDict) -> bool:
    """True for a report whose score is only a bound (it fell outside the search window)."""
    return "lowerbound" in info or "upperbound" in info


def repeats(info: chess.engine.InfoDict, earlier: chess.engine.InfoDict) -> bool:
    """True when `info` gives the score and depth `earlier` gave."""
    return info.get("depth") == earlier.get("depth") and info.get("score") == earlier.get("score")


def continues(line: Sequence[chess.Move], start: Sequence[chess.Move]) -> bool:
    """True when `line` begins with all of `start` and goes on past it."""
    return len(start) < len(line) and line[: len(start)] == start


def stopped_early(job: ClaimedJob, finals: Sequence[chess.engine.InfoDict]) -> bool:
    """Whether the job's time or nodes limit, not its depth limit, ended the search (in
    the middle of an iteration).

    Without a depth limit, or short of it, only the clock or the nodes limit ends a
    search. At the depth limit, either may still have stopped the last iteration: then
    the engine's final report comes at or after the time limit, or with at least the
    nodes the job allows (the engine stops once it has searched them).
    """
    reached = max((info.get("depth", 0) for info in finals), default=0)
    if job.depth_limit is None or reached < job.depth_limit:
        return True
    searched = max((info.get("time", 0.0) for info in finals), default=0.0)
    nodes = max((info.get("nodes", 0) for info in finals), default=0)
    return searched + CLOCK_STEP > job.time_limit or (
        job.nodes_limit is not None and nodes >= job.nodes_limit
    )


def searched_by(
    lines: Sequence[ResultLine], finals: Sequence[chess.engine.InfoDict]
) -> Searched | None:
    """How far a search went: the shallowest depth among its lines, and the nodes and
    seconds of the engine's final report (the newest of `finals`: both only grow during
    a search); None without lines."""
    if not lines:
        return None
    return Searched(
        depth=min(line.depth for line in lines),
        nodes=max(int(info.get("nodes", 0)) for info in finals),
        seconds=max(float(info.get("time", 0.0)) for info in finals),
    )


def lines_from_infos(
    board: chess.Board, infos: Iterable[chess.engine.InfoDict]
) -> list[ResultLine]:
    """Result lines, best first, from the engine's MultiPV answer for `board`.

    Scores and win, draw and loss chances are turned to White's point of view; lines
    without a score or moves (which an engine may send when stopped very early) are
    left out.
    """
    lines: list[ResultLine] = []
    for info in infos:
        score = info.get("score")
        moves = info.get("pv") or []
        if score is None or not moves:
            continue
        white = score.white()
        mate = white.mate()
        lines.append(
            ResultLine(
                rank=len(lines) + 1,
                centipawn_score=white.score(),
                mate_score=mate,
                pv=tuple(move.uci() for move in moves),
                pv_san=tuple(san_moves(board, moves)),
                depth=int(info.get("depth", 0)),
                wdl=chances(info, mate),
            )
        )
    return lines


def chances(info: chess.engine.InfoDict, mate: int | None) -> tuple[int, int, int] | None:
    """The report's win, draw and loss chances per mille, from White's point of view;
    None when the engine gave none.

    A line that mates (`mate`: moves to mate, positive when White mates) gives the side
    that mates all of them, whatever the engine estimated: a mate is certain.
    """
    wdl = info.get("wdl")
    if wdl is None:
        return None
    if mate is not None:
        return WHITE_MATES if mate > 0 else BLACK_MATES
    white = wdl.white()
    return (int(white.wins), int(white.draws), int(white.losses))


def san_moves(board: chess.Board, moves: Iterable[chess.Move]) -> list[str]:
    """`moves`, played from `board`, in standard algebraic notation."""
    position = board.copy(stack=False)
    san: list[str] = []
    for move in moves:
        san.append(position.san(move))
        position.push(move)
    return san


async def analyse(
    engine: chess.engine.UciProtocol,
    job: ClaimedJob,
    timeout: float,
    progress: Publisher | None = None,
) -> Analysed:
    """Analyse the job's position; raises `TimeoutError` when the engine overruns `timeout`.

    python-chess puts no deadline on an engine's answer (a depth-only search may run for
    ever), so the caller's bound is enforced here; a search cut off by it is told to stop
    before the error is raised. `progress`, when given, follows the search while someone
    watches it (`follow`).
    """
    board = chess.Board(job.fen)
    reports = Reports()
    await asyncio.wait_for(follow(engine, board, job, reports, progress), timeout)
    finals = reports.final()
    lines = reports.lines(board, cut_short=stopped_early(job, finals))
    return Analysed(lines, searched_by(lines, finals))


async def follow(
    engine: chess.engine.UciProtocol,
    board: chess.Board,
    job: ClaimedJob,
    reports: Reports,
    progress: Publisher | None = None,
) -> None:
    """Run the job's search on `engine` to its end, letting `reports` see every report,
    and `progress` too while someone watches the search.

    Each job is a game of its own (`game=job.id`): the engine is told of a new game, so
    an answer does not depend on what the engine analysed before. A report may come
    every few microseconds: a search nobody watches pays one test per report for its
    progress.
    """
    limit = limit_for(job)
    with await engine.analysis(
        board, limit, multipv=job.num_moves_to_return, game=job.id
    ) as search:
        async for info in search:
            reports.see(info)
            if progress is not None and progress.watching:
                progress.see(info, reports)
