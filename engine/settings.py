"""Worker settings, read from the environment by `python -m engine`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STOCKFISH_PATHS = ("/usr/games/stockfish", "/usr/bin/stockfish", "/usr/local/bin/stockfish")


def default_slots() -> int:
    """One slot per CPU: each slot runs one single-threaded Stockfish."""
    return os.cpu_count() or 1


class EngineSettings(BaseSettings):
    """How many engines a worker runs and how long it lets them think."""

    model_config = SettingsConfigDict(env_prefix="ENGINE_", extra="ignore")

    stockfish_path: str | None = Field(
        default=None, validation_alias=AliasChoices("STOCKFISH_PATH", "ENGINE_STOCKFISH_PATH")
    )
    """The engine binary; unset: `stockfish` on PATH, then /usr/games/stockfish."""
    slots: int = Field(default_factory=default_slots, ge=1, le=256)
    """Analyses run at once by this process, one Stockfish each."""
    hash_mb: int = Field(default=16, ge=1, le=4096)
    """Stockfish's hash table per engine, in MB."""
    lease_seconds: float = Field(default=8.0, ge=1, le=600)
    """How long a claimed row stays this worker's without a heartbeat; the heartbeat
    renews it every quarter of this, so a dead worker's rows are taken back within
    about one lease (plus one sweep interval)."""
    sweep_interval: float = Field(default=1.0, gt=0, le=300)
    """Seconds between looks for rows whose lease expired (any worker takes them back)."""
    retention_days: float = Field(
        default=30,
        ge=0,
        le=36500,
        validation_alias=AliasChoices("RETENTION_DAYS", "ENGINE_RETENTION_DAYS"),
    )
    """Finished analyses (done, failed, canceled) older than this many days are deleted
    by the sweep, a batch at a time; 0: kept for ever."""
    persisted_query_days: float = Field(
        default=30,
        ge=0,
        le=36500,
        validation_alias=AliasChoices("PERSISTED_QUERY_DAYS", "ENGINE_PERSISTED_QUERY_DAYS"),
    )
    """Persisted GraphQL documents stored more than this many days ago are deleted by the
    sweep; 0: kept for ever. Expiry is cheap: a client whose hash is gone is answered
    PERSISTED_QUERY_NOT_FOUND and Apollo's link registers the document again, one extra
    round trip; so 30 days keeps the table to the documents clients still send."""
    retention_batch: int = Field(default=500, ge=1, le=100_000)
    """Rows deleted per retention statement: each batch is one short transaction, so
    deleting never holds many row locks at once."""
    retry_base_delay: float = Field(default=0.5, ge=0, le=600)
    """First retry waits about this long; each further one twice as long (with jitter)."""
    retry_max_delay: float = Field(default=60.0, ge=0, le=3600)
    """Cap of the retry delay."""
    grace_seconds: float = Field(default=10.0, ge=0, le=3600)
    """On SIGTERM, how long running analyses may go on before they are put back."""
    poll_interval: float = Field(default=5.0, gt=0, le=300)
    """Seconds an idle slot waits for a notification before it looks at the queue anyway."""
    timeout_margin: float = Field(default=5.0, gt=0, le=300)
    """Seconds an engine call may overrun its time limit before the engine counts as hung."""
    start_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds an engine may take to start and answer `uci`."""
    claim_ahead_below: float = Field(default=0.05, ge=0, le=10)
    """While this worker's analyses average under this many seconds, it claims rows
    ahead (one to four per slot), so engines do not wait for a claim's round trip;
    0: never."""

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve Prometheus metrics on this port (unset: no metrics server)."""
    metrics_host: str = "127.0.0.1"
    """Interface of the metrics server."""

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between lease renewals: a quarter of the lease."""
        return self.lease_seconds / 4


def find_stockfish(configured: str | None) -> Path | None:
    """The engine binary to run, or None when there is none."""
    if configured:
        candidate = shutil.which(configured)
        return Path(candidate) if candidate else None
    found = shutil.which("stockfish")
    if found:
        return Path(found)
    for path in DEFAULT_STOCKFISH_PATHS:
        if os.access(path, os.X_OK):
            return Path(path)
    return None
