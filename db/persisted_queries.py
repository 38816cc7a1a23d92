"""The shared store of persisted GraphQL documents, keyed by their SHA-256."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors

FIND = text("SELECT query FROM persisted_queries WHERE sha256 = :sha256")
SAVE = text(
    "INSERT INTO persisted_queries (sha256, query) VALUES (:sha256, :query)"
    " ON CONFLICT (sha256) DO NOTHING"
)


@errors.translated
async def find(engine: AsyncEngine, sha256: str) -> str | None:
    """The document registered under `sha256`, if any."""
    async with engine.connect() as connection:
        query = (await connection.execute(FIND, {"sha256": sha256})).scalar_one_or_none()
    return None if query is None else str(query)


@errors.translated
async def save(engine: AsyncEngine, sha256: str, query: str) -> None:
    """Register `query` under `sha256` (the caller has checked that they match)."""
    async with engine.begin() as connection:
        await connection.execute(SAVE, {"sha256": sha256, "query": query})
