"""Worker heartbeat rows: who is alive, where, and whether it listens for new work.

Each worker process inserts its row at start, refreshes it with every heartbeat and
deletes it when it stops; the row of a worker that died expires and the sweep removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker says of itself."""

    id: str
    host: str
    pid: int
    slots: int
    engine: str


REGISTER = text(
    """
    INSERT INTO workers (id, host, pid, slots, engine, listening, expires_at)
    VALUES (:id, :host, :pid, :slots, :engine, :listening,
            now() + make_interval(secs => :ttl))
    ON CONFLICT (id) DO UPDATE
       SET listening = EXCLUDED.listening, last_seen_at = now(), expires_at = EXCLUDED.expires_at
    """
)


@errors.translated
async def register(engine: AsyncEngine, worker: WorkerInfo, *, listening: bool, ttl: float) -> None:
    """Insert (or refresh) the worker's row; it expires `ttl` seconds from now."""
    async with engine.begin() as connection:
        await connection.execute(
            REGISTER,
            {
                "id": worker.id,
                "host": worker.host,
                "pid": worker.pid,
                "slots": worker.slots,
                "engine": worker.engine,
                "listening": listening,
                "ttl": ttl,
            },
        )


REMOVE = text("DELETE FROM workers WHERE id = :id")


@errors.translated
async def remove(engine: AsyncEngine, worker_id: str) -> None:
    """Delete the worker's row (it is stopping)."""
    async with engine.begin() as connection:
        await connection.execute(REMOVE, {"id": worker_id})


REMOVE_EXPIRED = text("DELETE FROM workers WHERE expires_at < now() RETURNING id")


@errors.translated
async def remove_expired(engine: AsyncEngine) -> list[str]:
    """Delete the rows of workers that stopped refreshing them; their ids."""
    async with engine.begin() as connection:
        return [row.id for row in await connection.execute(REMOVE_EXPIRED)]
