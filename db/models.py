"""The tables as Python sees them, and the values stored in their columns.

Alembic owns the table (`alembic/versions/`); this model must match it, and a test
checks that autogenerate finds no difference.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    Index,
    Integer,
    SmallInteger,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class AnalysisStatus(enum.StrEnum):
    """Where an analysis is in its life: queued → running → done | failed | canceled."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        """True once the analysis will never change again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({AnalysisStatus.DONE, AnalysisStatus.FAILED, AnalysisStatus.CANCELED})


@dataclass(frozen=True)
class ResultLine:
    """One principal variation of a finished analysis, as stored in `analyses.result`."""

    rank: int
    """1 for the best line, 2 for the second best, …"""
    centipawn_score: int | None
    """Centipawns from White's point of view; None when the line is a forced mate."""
    mate_score: int | None
    """Moves (not plies) to mate; positive when White mates, negative when Black does."""
    pv: tuple[str, ...]
    """The line's moves in UCI notation, from the analysed position."""
    pv_san: tuple[str, ...]
    """The same moves in standard algebraic notation."""
    depth: int
    """The search depth the engine reached for this line."""
    wdl: tuple[int, int, int] | None = None
    """Win, draw and loss chances in per mille, from White's point of view, as the engine
    estimates them (`UCI_ShowWDL`); None when the engine gave none."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored for this line."""
        # Spelled out: dataclasses.asdict deep-copies, and this runs for every result.
        return {
            "rank": self.rank,
            "centipawn_score": self.centipawn_score,
            "mate_score": self.mate_score,
            "pv": list(self.pv),
            "pv_san": list(self.pv_san),
            "depth": self.depth,
            "wdl": None if self.wdl is None else list(self.wdl),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ResultLine:
        """Read a line back from its stored JSON object."""
        return cls(
            rank=int(value["rank"]),
            centipawn_score=value.get("centipawn_score"),
            mate_score=value.get("mate_score"),
            pv=tuple(value.get("pv", ())),
            pv_san=tuple(value.get("pv_san", ())),
            depth=int(value.get("depth", 0)),
            wdl=_wdl(value.get("wdl")),
        )


def _wdl(value: Any) -> tuple[int, int, int] | None:
    if not value or len(value) != 3:
        return None
    return (int(value[0]), int(value[1]), int(value[2]))


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


status_type = Enum(
    AnalysisStatus,
    name="analysis_status",
    values_callable=lambda statuses: [status.value for status in statuses],
    validate_strings=True,
)


ANONYMOUS_TENANT = "00000000-0000-0000-0000-000000000000"
"""The id of the anonymous tenant's row (`db.tenants.ANONYMOUS_ID`)."""


class AnalysisKind(enum.IntEnum):
    """Which line of its tenant's an analysis waits in."""

    INTERACTIVE = 0
    """A single position someone waits for: before the tenant's batch work."""
    BATCH = 1
    """Part of a larger job (a game's positions)."""


class ApiKey(Base):
    """A tenant: an API key (only its secret's hash), its scopes and quotas, and the
    queue's state for it. See `db.tenants`."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    name: Mapped[str] = mapped_column(Text, unique=True)
    secret_hash: Mapped[str | None] = mapped_column(Text, unique=True)
    """SHA-256 of the secret, hexadecimal; NULL for the anonymous tenant."""
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{analyse}'"))
    max_queued: Mapped[int | None] = mapped_column(Integer)
    """Analyses it may have queued at once; NULL: no limit."""
    engine_seconds_per_hour: Mapped[float | None] = mapped_column(Float)
    """The token bucket's capacity and hourly refill; NULL: no limit. The anonymous
    tenant's follows the API's settings, written by each of its submissions."""
    weight: Mapped[float] = mapped_column(Float, server_default=text("1"))
    """Its share of the slots while several tenants have work queued."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    budget_seconds: Mapped[float | None] = mapped_column(Float)
    """Engine seconds in the bucket as of `budget_at`; NULL: full (never charged)."""
    budget_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_turn: Mapped[float] = mapped_column(Float, server_default=text("0"))
    """The turn its last interactive submission took (epoch seconds, virtual)."""
    next_batch_turn: Mapped[float] = mapped_column(Float, server_default=text("0"))
    """The same for its batch work."""
    queued_total: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """How many analyses it has ever queued: lets a submission that waited for another
    one's lock on this row count the analyses that one queued (see `db.submissions`)."""


class Analysis(Base):
    """One request to analyse a position, and its result once a worker has finished it."""

    __tablename__ = "analyses"

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    fen: Mapped[str] = mapped_column(Text)
    num_moves_to_return: Mapped[int] = mapped_column(Integer)
    time_limit: Mapped[float] = mapped_column(Float)
    depth_limit: Mapped[int | None] = mapped_column(Integer)
    nodes_limit: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[AnalysisStatus] = mapped_column(
        status_type, server_default=AnalysisStatus.QUEUED.value
    )
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    """Not read: the claim orders by `turn`."""
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), server_default=text(f"'{ANONYMOUS_TENANT}'::uuid")
    )
    """Who submitted it: an `api_keys` row (no foreign key; see migration 0008)."""
    kind: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    """`AnalysisKind`: interactive (0) or batch (1)."""
    turn: Mapped[float] = mapped_column(Float, server_default=text("extract(epoch FROM now())"))
    """Its place in the line (virtual time, epoch seconds): workers claim the smallest
    first. Fair queuing among tenants; see `db.submissions`."""
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("3"))
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    """When the service last changed the row (each of its statements sets it)."""
    position_key: Mapped[str | None] = mapped_column(Text)
    """The normalised position (`board.epd()`), the position cache's key; NULL for rows
    stored before the cache."""
    cached: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """Answered from the position cache, without an engine."""
    share_key: Mapped[str | None] = mapped_column(Text)
    """The position and every limit: requests with the same share key share one run.
    NULL when the request must have a run of its own (`fresh`)."""
    run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The id its run is queued and claimed under (the worker's name for it); NULL: its
    own id."""
    follows: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """It waits on another row's run: never claimed, it takes that row's status changes."""
    game_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The game it is a position of (`games`), if any."""
    ply: Mapped[int | None] = mapped_column(SmallInteger)
    """Which position of its game: 0 the start, n after the n-th move."""

    @property
    def run(self) -> uuid.UUID:
        """The id of the run that answers it (its own, or the one it follows)."""
        return self.run_id or self.id

    def result_lines(self) -> list[ResultLine] | None:
        """The stored result as values, best line first; None until the analysis is done."""
        if self.result is None:
            return None
        return [ResultLine.from_json(line) for line in self.result]


# Serves the claim: the queued row with the smallest turn; finished rows and the rows
# that follow another's run stay out of it.
Index(
    "ix_analyses_claim",
    Analysis.turn,
    postgresql_where=text("status = 'queued' AND NOT follows"),
)

# One run that new requests may join per share key (see `db.submissions`).
Index(
    "ix_analyses_active_run",
    Analysis.share_key,
    unique=True,
    postgresql_where=text(
        "share_key IS NOT NULL AND NOT follows AND status IN ('queued', 'running')"
        " AND cancel_requested_at IS NULL"
    ),
)

# A game's positions, in order.
Index(
    "ix_analyses_game",
    Analysis.game_id,
    Analysis.ply,
    postgresql_where=Analysis.game_id.is_not(None),
)

# The rows of one shared run.
Index("ix_analyses_run", Analysis.run_id, postgresql_where=Analysis.run_id.is_not(None))

# Serves a tenant's queued-work quota (a count) and what it waits for next.
Index(
    "ix_analyses_tenant_queued",
    Analysis.tenant_id,
    Analysis.turn,
    postgresql_where=Analysis.status == AnalysisStatus.QUEUED,
)

# Newest-first listings (keyset pagination), over everything, one status or one tenant;
# the status one also serves the lease sweep (running rows, as many as the slots). There
# is no index on lease_expires_at: a heartbeat's renewal can then be a HOT update.
Index("ix_analyses_listing", Analysis.created_at.desc(), Analysis.id.desc())
# A keyed tenant's listing (anonymous work is never listed by tenant).
Index(
    "ix_analyses_tenant_listing",
    Analysis.tenant_id,
    Analysis.created_at.desc(),
    Analysis.id.desc(),
    postgresql_where=Analysis.tenant_id != text(f"'{ANONYMOUS_TENANT}'::uuid"),
)
Index(
    "ix_analyses_status_listing",
    Analysis.status,
    Analysis.created_at.desc(),
    Analysis.id.desc(),
)
# "Finished in the last minute" in queue statistics.
Index(
    "ix_analyses_finished_at",
    Analysis.finished_at,
    postgresql_where=Analysis.finished_at.is_not(None),
)


class WorkerRow(Base):
    """One worker process, as its heartbeat last described it."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    engine: Mapped[str | None] = mapped_column(Text)
    listening: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """True while its LISTEN connection is up (it wakes on new work at once)."""
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """Past this, the worker is presumed dead and its row is removed."""


class GameRow(Base):
    """A game submitted for review (`db.games`); its positions are analyses."""

    __tablename__ = "games"

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    headers: Mapped[list[list[str]]] = mapped_column(JSONB, server_default=text("'[]'"))
    """The PGN's tag pairs, in order, each [name, value]."""
    initial_fen: Mapped[str] = mapped_column(Text)
    moves: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    """The moves played, each {uci, san, fen_before}."""
    num_moves_to_return: Mapped[int] = mapped_column(Integer)
    time_limit: Mapped[float] = mapped_column(Float)
    depth_limit: Mapped[int | None] = mapped_column(Integer)
    nodes_limit: Mapped[int | None] = mapped_column(BigInteger)
    opening_eco: Mapped[str | None] = mapped_column(Text)
    opening_name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index(
    "ix_games_tenant_listing",
    GameRow.tenant_id,
    GameRow.created_at.desc(),
    GameRow.id.desc(),
)


class PositionCache(Base):
    """The best finished search of a position for a number of lines (`db.cache`)."""

    __tablename__ = "position_cache"

    position_key: Mapped[str] = mapped_column(Text, primary_key=True)
    lines: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    """How many lines were asked for (the result may hold fewer: the legal moves)."""
    depth: Mapped[int] = mapped_column(Integer)
    """The shallowest depth among its lines."""
    nodes: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    """How long the engine searched."""
    result: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    engine: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AnalysisProgress(Base):
    """The latest report of a run someone watches (`db.progress`); not crash-safe."""

    __tablename__ = "analysis_progress"
    __table_args__ = {"prefixes": ["UNLOGGED"]}  # noqa: RUF012 (SQLAlchemy reads it)

    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    watched_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """Until when a listener wants it; the worker publishes only before then."""
    depth: Mapped[int | None] = mapped_column(Integer)
    nodes: Mapped[int | None] = mapped_column(BigInteger)
    elapsed: Mapped[float | None] = mapped_column(Float)
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PersistedQuery(Base):
    """A GraphQL document registered under its SHA-256 (Apollo's persisted queries)."""

    __tablename__ = "persisted_queries"

    sha256: Mapped[str] = mapped_column(Text, primary_key=True)
    query: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
