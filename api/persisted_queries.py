"""Automatic persisted queries (Apollo's APQ protocol), which Strawberry does not have.

A client sends `extensions.persistedQuery = {version: 1, sha256Hash}` instead of the
document. Known hash: the server runs the document it stored. Unknown hash: the answer
is the error PERSISTED_QUERY_NOT_FOUND (HTTP 200), and the client sends the document and
the hash together, which the server checks (a mismatch is 400) and stores.

Documents live in a bounded LRU per process, and, with `API_PERSISTED_QUERIES_SHARED`,
also in PostgreSQL, so that a document registered through one API process is known to all.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict

from sqlalchemy.ext.asyncio import AsyncEngine

from db import persisted_queries
from db.errors import TransientDatabaseError


def sha256(query: str) -> str:
    """The hash a client computes for `query`: SHA-256 of its UTF-8 bytes, in hex."""
    return hashlib.sha256(query.encode()).hexdigest()


class PersistedQueries:
    """A bounded LRU of documents by hash, optionally backed by the database."""

    def __init__(self, size: int, database: AsyncEngine | None = None) -> None:
        self._size = size
        self._database = database
        self._documents: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._documents)

    async def find(self, sha256_hash: str) -> str | None:
        """The document stored under `sha256_hash`, if any (marked recently used)."""
        query = self._documents.get(sha256_hash)
        if query is not None:
            self._documents.move_to_end(sha256_hash)
            return query
        if self._database is None:
            return None
        try:
            query = await persisted_queries.find(self._database, sha256_hash)
        except TransientDatabaseError:
            return None  # the client then sends the document itself
        if query is not None:
            self._remember(sha256_hash, query)
        return query

    async def store(self, sha256_hash: str, query: str) -> None:
        """Keep `query` under `sha256_hash`; the oldest entries go past the size."""
        self._remember(sha256_hash, query)
        if self._database is not None:
            # If the database is away, the document is known here; others ask the client.
            with contextlib.suppress(TransientDatabaseError):
                await persisted_queries.save(self._database, sha256_hash, query)

    def _remember(self, sha256_hash: str, query: str) -> None:
        self._documents[sha256_hash] = query
        self._documents.move_to_end(sha256_hash)
        while len(self._documents) > self._size:
            self._documents.popitem(last=False)
