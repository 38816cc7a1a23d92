"""Turning a claimed job into engine limits, and the engine's answer into result lines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import chess
import chess.engine

from db.claims import ClaimedJob
from db.models import ResultLine


def limit_for(job: ClaimedJob) -> chess.engine.Limit:
    """Stop at whichever of the job's limits comes first."""
    return chess.engine.Limit(time=job.time_limit, depth=job.depth_limit)


def lines_from_infos(
    board: chess.Board, infos: Iterable[chess.engine.InfoDict]
) -> list[ResultLine]:
    """Result lines, best first, from the engine's MultiPV answer for `board`.

    Scores are turned to White's point of view; lines without a score or moves
    (which an engine may send when stopped very early) are left out.
    """
    lines: list[ResultLine] = []
    for info in infos:
        score = info.get("score")
        moves = info.get("pv") or []
        if score is None or not moves:
            continue
        white = score.white()
        lines.append(
            ResultLine(
                rank=len(lines) + 1,
                centipawn_score=white.score(),
                mate_score=white.mate(),
                pv=tuple(move.uci() for move in moves),
                pv_san=tuple(san_moves(board, moves)),
                depth=int(info.get("depth", 0)),
            )
        )
    return lines


def san_moves(board: chess.Board, moves: Iterable[chess.Move]) -> list[str]:
    """`moves`, played from `board`, in standard algebraic notation."""
    position = board.copy(stack=False)
    san: list[str] = []
    for move in moves:
        san.append(position.san(move))
        position.push(move)
    return san


async def analyse(
    engine: chess.engine.UciProtocol, job: ClaimedJob, timeout: float
) -> list[ResultLine]:
    """Analyse the job's position; raises `TimeoutError` when the engine overruns `timeout`.

    python-chess puts no deadline on an engine's answer (a depth-only search may run for
    ever), so the caller's bound is enforced here.
    """
    board = chess.Board(job.fen)
    infos = await asyncio.wait_for(
        engine.analyse(board, limit_for(job), multipv=job.num_moves_to_return, game=job.id),
        timeout,
    )
    return lines_from_infos(board, infos)
