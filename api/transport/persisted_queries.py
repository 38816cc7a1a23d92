"""Automatic persisted queries (Apollo's APQ protocol), which Strawberry does not have.

A client sends `extensions.persistedQuery = {version: 1, sha256Hash}` instead of the
document. Known hash: the server runs the document it stored. Unknown hash: the answer
is the error PERSISTED_QUERY_NOT_FOUND (HTTP 200), and the client sends the document and
the hash together, which the server checks (a mismatch is 400) and stores.

Only documents the schema would run are stored: each is parsed and validated first,
with the schema's rules and the limits of `api.transport.protection` (tokens, depth, aliases,
introspection), the checks every operation goes through. A refused document is not kept
anywhere; the request runs it all the same, and GraphQL answers why it does not run.

Documents live in a bounded LRU per process (at most `API_PERSISTED_QUERIES_SIZE`
documents and `API_PERSISTED_QUERIES_MAX_BYTES` bytes), and, with
`API_PERSISTED_QUERIES_SHARED`, also in PostgreSQL, so that a document registered through
one API process is known to all. There they expire after `PERSISTED_QUERY_DAYS`: a
document registered longer ago is unknown (the client registers it again), even before
the workers' sweep deletes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import OrderedDict

import strawberry
from graphql import GraphQLError, GraphQLSchema, parse, specified_rules
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.schema.schema import validate_document

from api.settings import ApiSettings
from api.transport import protection
from db import persisted_queries
from db.errors import TransientDatabaseError

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
"""A hash as the store keys it: SHA-256 in lower-case hex."""


def sha256(query: str) -> str:
    """The hash a client computes for `query`: SHA-256 of its UTF-8 bytes, in hex.

    Text that is not valid Unicode (a lone surrogate, which JSON can carry) is hashed
    as it is rather than refused here: it matches no hash a client computes, and the
    store does not keep it."""
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()


class DocumentCheck:
    """Parses and validates a document as the schema does before it runs an operation."""

    def __init__(self, schema: strawberry.Schema, settings: ApiSettings) -> None:
        self._schema: GraphQLSchema = protection.schema_of(schema)
        # The very limits each operation gets.
        limits = protection.document_limits(settings)
        self._max_tokens = limits.max_tokens
        self._rules = (*specified_rules, *limits.rules)

    def errors(self, query: str) -> list[GraphQLError]:
        """Why `query` would not run; empty when it would."""
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError as error:
            return [error]
        return validate_document(self._schema, document, self._rules)


class PersistedQueries:
    """A bounded LRU of checked documents by hash, optionally backed by the database."""

    def __init__(
        self,
        size: int,
        database: AsyncEngine | None = None,
        *,
        check: DocumentCheck | None = None,
        max_bytes: int = 10_000_000,
        max_age_days: float = 0,
    ) -> None:
        """At most `size` documents and `max_bytes` bytes of them; `check` decides which
        documents may be kept (without one, any document that parses); documents in
        `database` expire after `max_age_days` (≤ 0: never)."""
        self._size = size
        self._max_bytes = max_bytes
        self._database = database
        self._check = check
        self._max_age_days = max_age_days
        self._documents: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    @classmethod
    def from_settings(
        cls, settings: ApiSettings, schema: strawberry.Schema, database: AsyncEngine | None
    ) -> PersistedQueries | None:
        """The store `settings` ask for, checking documents against `schema`; None when
        persisted queries are off. `database` is used when they are shared."""
        if settings.persisted_queries_size <= 0:
            return None
        return cls(
            settings.persisted_queries_size,
            database if settings.persisted_queries_shared else None,
            check=DocumentCheck(schema, settings),
            max_bytes=settings.persisted_queries_max_bytes,
            max_age_days=settings.persisted_query_days,
        )

    def __len__(self) -> int:
        return len(self._documents)

    @property
    def stored_bytes(self) -> int:
        """UTF-8 bytes of the documents kept in this process."""
        return self._bytes

    async def find(self, sha256_hash: str) -> str | None:
        """The document stored under `sha256_hash`, if any (marked recently used)."""
        query = self._documents.get(sha256_hash)
        if query is not None:
            self._documents.move_to_end(sha256_hash)
            return query
        if self._database is None or not SHA256_HEX.fullmatch(sha256_hash):
            return None
        try:
            query = await persisted_queries.find(self._database, sha256_hash, self._max_age_days)
        except TransientDatabaseError:
            return None  # the client then sends the document itself
        if query is None or not self._acceptable(sha256_hash, query):
            # A row this process would not have stored (written before documents were
            # checked, or under other limits): the client sends the document, and the
            # request then says what is wrong with it.
            return None
        self._remember(sha256_hash, query)
        return query

    async def store(self, sha256_hash: str, query: str) -> bool:
        """Keep `query` under `sha256_hash` if it is a document the schema would run;
        True when it is kept. The least recently used go past the size or the bytes."""
        if sha256_hash in self._documents:  # the same hash is the same, checked, document
            self._documents.move_to_end(sha256_hash)
            return True
        if not self._acceptable(sha256_hash, query):
            return False
        self._remember(sha256_hash, query)
        if self._database is not None:
            # If the database is away, the document is known here; others ask the client.
            with contextlib.suppress(TransientDatabaseError):
                await persisted_queries.save(self._database, sha256_hash, query, self._max_age_days)
        return True

    def _acceptable(self, sha256_hash: str, query: str) -> bool:
        """True when `query` may be kept under `sha256_hash`."""
        try:
            size = len(query.encode())
        except UnicodeEncodeError:
            return False  # lone surrogates: not text PostgreSQL (or a client) can hold
        if size > self._max_bytes or "\x00" in query:
            return False  # GraphQL allows NUL in strings and comments; PostgreSQL does not
        if sha256(query) != sha256_hash:
            return False
        if self._check is None:
            try:
                parse(query)
            except GraphQLError:
                return False
            return True
        return not self._check.errors(query)

    def _remember(self, sha256_hash: str, query: str) -> None:
        previous = self._documents.pop(sha256_hash, None)
        if previous is not None:
            self._bytes -= len(previous.encode())
        self._documents[sha256_hash] = query
        self._bytes += len(query.encode())
        while len(self._documents) > self._size or self._bytes > self._max_bytes:
            _, evicted = self._documents.popitem(last=False)
            self._bytes -= len(evicted.encode())
