"""The shared store of persisted GraphQL documents, keyed by their SHA-256.

Documents expire `max_age_days` after they were registered (≤ 0: never). The workers'
sweep deletes expired rows (`db.retention`); until it does, `find` already treats them
as unknown, so a document is gone after its days whenever the sweep runs, and `save`
registers an expired one anew.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors

FIND = text(
    """
    SELECT query FROM persisted_queries
     WHERE sha256 = :sha256
       -- not expired: registered within the last :days days (or :days ≤ 0, no expiry)
       AND (CAST(:days AS double precision) <= 0
            OR created_at >= now() - CAST(:days AS double precision) * interval '1 day')
    """
)
SAVE = text(
    """
    INSERT INTO persisted_queries (sha256, query) VALUES (:sha256, :query)
    ON CONFLICT (sha256) DO UPDATE SET created_at = now()
     -- registered again after it expired but before the sweep deleted it: a new term
     -- (the same hash is the same document); a live row is left as it is
     WHERE CAST(:days AS double precision) > 0
       AND persisted_queries.created_at
           < now() - CAST(:days AS double precision) * interval '1 day'
    """
)


@errors.translated
async def find(engine: AsyncEngine, sha256: str, max_age_days: float = 0) -> str | None:
    """The document registered under `sha256` within the last `max_age_days`, if any."""
    async with engine.connect() as connection:
        query = (
            await connection.execute(FIND, {"sha256": sha256, "days": max_age_days})
        ).scalar_one_or_none()
    return None if query is None else str(query)


@errors.translated
async def save(engine: AsyncEngine, sha256: str, query: str, max_age_days: float = 0) -> None:
    """Register `query` under `sha256` (the caller has checked that they match); an
    expired registration (older than `max_age_days`) starts again from now."""
    async with engine.begin() as connection:
        await connection.execute(SAVE, {"sha256": sha256, "query": query, "days": max_age_days})
