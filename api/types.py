"""GraphQL types, kept apart from the ORM model: each reads from it in `from_model`."""

from __future__ import annotations

import enum
import functools
from datetime import datetime

import chess
import strawberry

from api import lichess
from api.context import ResolverInfo
from db import models, tenants


@strawberry.enum(description="Where an analysis is in its life.")
class AnalysisStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"

    @classmethod
    def from_model(cls, status: models.AnalysisStatus) -> AnalysisStatus:
        return cls(status.value)


@strawberry.enum(
    description=(
        "How the rules end the game in a position, told from the position alone (a FEN"
        " keeps no history, so repetition cannot be told)."
    )
)
class GameOver(enum.Enum):
    CHECKMATE = strawberry.enum_value(
        "checkmate", description="The side to move is in check and has no legal move."
    )
    STALEMATE = strawberry.enum_value(
        "stalemate", description="The side to move is not in check and has no legal move."
    )
    INSUFFICIENT_MATERIAL = strawberry.enum_value(
        "insufficient_material",
        description="Neither side has the material to checkmate: the game is drawn.",
    )
    SEVENTYFIVE_MOVES = strawberry.enum_value(
        "seventyfive_moves",
        description=(
            "75 moves by each side (halfmove clock 150) without a capture or a pawn move:"
            " the game is drawn."
        ),
    )


@functools.lru_cache(maxsize=4096)
def game_over(fen: str) -> GameOver | None:
    """How the rules end the game in the position `fen`; None when play goes on. A
    position without a legal move is CHECKMATE or STALEMATE, whatever else holds, so
    that these two are exactly the positions DONE with an empty result. Cached: the same
    positions are read again and again (every listing, every game's start)."""
    board = chess.Board(fen)
    if board.is_checkmate():
        return GameOver.CHECKMATE
    if board.is_stalemate():
        return GameOver.STALEMATE
    if board.is_insufficient_material():
        return GameOver.INSUFFICIENT_MATERIAL
    if board.is_seventyfive_moves():
        return GameOver.SEVENTYFIVE_MOVES
    return None


async def position_game_over(root: Analysis) -> GameOver | None:
    """The `gameOver` of an analysis, worked out only when a client asks for it."""
    return game_over(root.fen)


@strawberry.type(description="Win, draw and loss chances, per mille, from White's point of view.")
class Wdl:
    win: int
    draw: int
    loss: int

    @classmethod
    def of(cls, wdl: tuple[int, int, int]) -> Wdl:
        return cls(win=wdl[0], draw=wdl[1], loss=wdl[2])


@strawberry.type(description="One line of play the engine found, best first.")
class Line:
    rank: int = strawberry.field(description="1 for the best line.")
    centipawn_score: int | None = strawberry.field(
        description="Centipawns from White's point of view; null when mateScore is set."
    )
    mate_score: int | None = strawberry.field(
        description="Moves (not plies) to mate; positive when White mates."
    )
    pv: list[str] = strawberry.field(description="The moves in UCI notation.")
    pv_san: list[str] = strawberry.field(description="The moves in standard algebraic notation.")
    depth: int = strawberry.field(description="Search depth reached, in plies.")
    win_percent: float = strawberry.field(
        description=(
            "White's chance of winning, 0..100, from the score as Lichess computes it:"
            " 50 + 50 * (2 / (1 + exp(-0.00368208 * cp)) - 1), cp clamped to ±1000, a mate"
            " counting as ±1000."
        )
    )
    wdl: Wdl | None = strawberry.field(
        description=(
            "Win, draw and loss chances per mille, White's view, as the engine estimates"
            " them (UCI_ShowWDL); for a mate, 1000 for the side that mates."
        )
    )

    @classmethod
    def from_model(cls, line: models.ResultLine) -> Line:
        return cls(
            rank=line.rank,
            centipawn_score=line.centipawn_score,
            mate_score=line.mate_score,
            pv=list(line.pv),
            pv_san=list(line.pv_san),
            depth=line.depth,
            win_percent=round(lichess.win_percent(line.centipawn_score, line.mate_score), 2),
            wdl=None
            if line.wdl is None
            else Wdl(win=line.wdl[0], draw=line.wdl[1], loss=line.wdl[2]),
        )


@strawberry.type(description="A request to analyse a position, and its result once done.")
class Analysis:
    id: strawberry.ID
    fen: str = strawberry.field(
        description=(
            "The position, as a full FEN of six fields (startpos and left-out move counters"
            " written out)."
        )
    )
    num_moves_to_return: int
    time_limit: float
    depth_limit: int | None
    nodes_limit: int | None
    status: AnalysisStatus
    result: list[Line] | None = strawberry.field(
        description="Up to numMovesToReturn lines, best first; null until DONE."
    )
    cached: bool = strawberry.field(
        description=(
            "Answered at once from an earlier search of the same position that searched"
            " at least as deep, as many nodes or as long, with at least as many lines."
        )
    )
    game_over: GameOver | None = strawberry.field(
        resolver=position_game_over,
        description=(
            "How the rules end the game in this position; null when play goes on."
            " CHECKMATE and STALEMATE are the positions without a legal move: DONE at once,"
            " with an empty result. INSUFFICIENT_MATERIAL and SEVENTYFIVE_MOVES positions"
            " are drawn but still have moves, and are analysed like any other."
        ),
    )
    error: str | None = strawberry.field(description="Why the analysis FAILED.")
    engine: str | None = strawberry.field(description='The engine that ran, e.g. "Stockfish 15.1".')
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_model(cls, row: models.Analysis) -> Analysis:
        lines = row.result_lines()
        return cls(
            id=strawberry.ID(str(row.id)),
            fen=row.fen,
            num_moves_to_return=row.num_moves_to_return,
            time_limit=row.time_limit,
            depth_limit=row.depth_limit,
            nodes_limit=row.nodes_limit,
            status=AnalysisStatus.from_model(row.status),
            result=None if lines is None else [Line.from_model(line) for line in lines],
            cached=row.cached,
            error=row.error,
            engine=row.engine,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


@strawberry.type(description="A search as it deepens, and the analysis it answers.")
class AnalysisProgress:
    analysis: Analysis = strawberry.field(
        description="The analysis followed: RUNNING while the search goes on, then finished."
    )
    depth: int | None = strawberry.field(
        description="The depth of the deepest iteration the engine finished; null before one."
    )
    lines: list[Line] = strawberry.field(
        description=(
            "The best lines at that depth, best first; at the end, the analysis's result"
            " (empty unless DONE)."
        )
    )
    nodes: int | None = strawberry.field(description="Positions searched so far.")
    elapsed: float | None = strawberry.field(description="Seconds searched so far.")


@strawberry.input(description="A position to analyse and the engine's limits.")
class SubmitAnalysisInput:
    fen: str = strawberry.field(
        description=(
            "The position in Forsyth-Edwards Notation: board, side to move, castling"
            " rights, en passant square, halfmove clock and fullmove number, e.g."
            ' "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1". The two move'
            ' counters may be left out (they are then "0 1"); the other fields may not.'
            ' "startpos" stands for the standard starting position, as in UCI (moves after'
            " it are not taken: send the FEN they lead to). Standard chess only: Chess960"
            " and other variants are not supported (Shredder-FEN or X-FEN castling letters"
            ' such as "HAha", castling rights only Chess960 explains, Crazyhouse pockets,'
            " Three-check counts)."
        )
    )
    num_moves_to_return: int = strawberry.field(
        default=1, description="How many lines to return (MultiPV), 1..10 by default."
    )
    time_limit: float = strawberry.field(
        default=1.0, description="Seconds the engine may think, more than 0, at most 60."
    )
    depth_limit: int | None = strawberry.field(
        default=None, description="Plies the engine may search, 1..60; null: no such limit."
    )
    nodes_limit: int | None = strawberry.field(
        default=None,
        description=(
            "Nodes the engine may search, 1..1,000,000,000; null: no such limit. Lichess"
            " analyses by node budget: unlike time, it gives the same answer on any machine."
        ),
    )
    fresh: bool = strawberry.field(
        default=False,
        description=(
            "Search anew: neither answer from the position cache nor join a search of the"
            " same position under way."
        ),
    )


@strawberry.type(description="One analysis in a listing, and where the listing stands.")
class AnalysisEdge:
    node: Analysis
    cursor: str = strawberry.field(description="Pass as `after` to continue past this node.")


@strawberry.type(description="Where a page of a listing stands (Relay connections).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, cursors: list[str], has_next_page: bool, after: str | None) -> PageInfo:
        """Where a page of these cursors stands, read after `after`."""
        return cls(
            has_next_page=has_next_page,
            has_previous_page=after is not None,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )


@strawberry.type(description="A page of analyses, newest first.")
class AnalysisConnection:
    edges: list[AnalysisEdge]
    page_info: PageInfo


@strawberry.type(description="A live worker process, from its heartbeat.")
class WorkerStatus:
    id: strawberry.ID
    host: str
    pid: int
    slots: int = strawberry.field(description="Analyses it can run at once.")
    running: int = strawberry.field(description="Analyses it runs now.")
    engine: str | None
    listening: bool = strawberry.field(
        description="Its notification connection is up: it wakes on new work at once."
    )
    started_at: datetime
    last_seen_at: datetime


@strawberry.type(
    description=(
        "The queue at one moment, read in one snapshot: everyone's analyses for an admin"
        " key, the caller's own for any other."
    )
)
class QueueStats:
    queued: int
    running: int
    done: int
    failed: int
    canceled: int
    oldest_queued_age_seconds: float | None = strawberry.field(
        description="Age of the oldest queued analysis; null when none waits."
    )
    finished_last_minute: int = strawberry.field(
        description="Analyses that became DONE, FAILED or CANCELED in the last 60 s."
    )
    workers_alive: int = strawberry.field(
        description="Live workers (heartbeat not expired); 0 unless the key is an admin's."
    )
    workers: list[WorkerStatus] = strawberry.field(
        description=(
            "Live workers (heartbeat not expired), oldest first; empty unless the key is"
            " an admin's."
        )
    )
    running_without_worker: int = strawberry.field(
        description=(
            "Running analyses whose worker is gone; the next sweep takes them back. 0"
            " unless the key is an admin's."
        )
    )


@strawberry.enum(description="What a key may do.")
class Scope(enum.Enum):
    ANALYSE = strawberry.enum_value(
        "analyse", description="Submit analyses, and read and cancel one's own."
    )
    ADMIN = strawberry.enum_value(
        "admin",
        description="Read and cancel everyone's analyses; the workers in queueStats; /metrics.",
    )


SCOPES = {tenants.ANALYSE: Scope.ANALYSE, tenants.ADMIN: Scope.ADMIN}
"""Each scope a key may have, as the schema names it."""


@strawberry.type(description="What a tenant may use; null: no limit.")
class Quotas:
    max_queued: int | None = strawberry.field(
        description="Analyses it may have queued at once (QUOTA_EXCEEDED past it)."
    )
    engine_seconds_per_hour: float | None = strawberry.field(
        description=(
            "Engine seconds it may be charged per hour, each submission its timeLimit"
            " (RATE_LIMITED past it); what an analysis did not use is given back."
        )
    )
    weight: float = strawberry.field(
        description="Its share of the workers while several tenants have work queued."
    )


@strawberry.type(description="What a tenant has in the queue and has used.")
class Usage:
    queued: int
    running: int
    engine_seconds_available: float | None = strawberry.field(
        description="Engine seconds it may be charged now; null without such a quota."
    )
    engine_seconds_last_hour: float = strawberry.field(
        description="Engine time its analyses that finished in the last hour took."
    )


async def viewer_usage(root: Viewer, info: ResolverInfo) -> Usage:
    """What the viewer has in the queue and has used, read only when asked for."""
    found = await tenants.usage(info.context.pool, root.tenant)
    return Usage(
        queued=found.queued,
        running=found.running,
        engine_seconds_available=found.engine_seconds_available,
        engine_seconds_last_hour=found.engine_seconds_last_hour,
    )


@strawberry.type(description="Who asks: the tenant of the request's key, or the anonymous one.")
class Viewer:
    name: str = strawberry.field(description='The key\'s name; "anonymous" without a key.')
    scopes: list[Scope]
    quotas: Quotas
    tenant: strawberry.Private[tenants.Tenant]

    @classmethod
    def from_tenant(cls, tenant: tenants.Tenant) -> Viewer:
        quotas = tenant.quotas
        return cls(
            name=tenant.name,
            scopes=[scope for name, scope in SCOPES.items() if name in tenant.scopes],
            quotas=Quotas(
                max_queued=quotas.max_queued,
                engine_seconds_per_hour=quotas.engine_seconds_per_hour,
                weight=quotas.weight,
            ),
            tenant=tenant,
        )

    usage: Usage = strawberry.field(
        resolver=viewer_usage,
        description="Its analyses queued and running now, and its engine time.",
    )
