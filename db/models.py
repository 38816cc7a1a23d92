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
        )


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

    def result_lines(self) -> list[ResultLine] | None:
        """The stored result as values, best line first; None until the analysis is done."""
        if self.result is None:
            return None
        return [ResultLine.from_json(line) for line in self.result]


# Serves the claim: the queued row with the smallest turn; finished rows stay out of it.
Index("ix_analyses_claim", Analysis.turn, postgresql_where=Analysis.status == AnalysisStatus.QUEUED)

# Serves a tenant's queued-work quota (a count) and what it waits for next.
Index(
    "ix_analyses_tenant_queued",
    Analysis.tenant_id,
    Analysis.turn,
    postgresql_where=Analysis.status == AnalysisStatus.QUEUED,
)

# Serves the lease sweep: running rows by lease expiry.
Index(
    "ix_analyses_lease",
    Analysis.lease_expires_at,
    postgresql_where=Analysis.status == AnalysisStatus.RUNNING,
)

# Newest-first listings (keyset pagination), over everything, one status or one tenant.
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


class PersistedQuery(Base):
    """A GraphQL document registered under its SHA-256 (Apollo's persisted queries)."""

    __tablename__ = "persisted_queries"

    sha256: Mapped[str] = mapped_column(Text, primary_key=True)
    query: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
