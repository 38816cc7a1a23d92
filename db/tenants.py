"""Tenants: the API keys that submit work, their scopes and quotas, and what they use.

A key is a random secret shown once, when it is created; the `api_keys` table keeps only
its SHA-256, so a stolen copy of the database cannot be used to call the API. Requests
without a key act as the anonymous tenant (a fixed row with no secret), whose quotas come
from the API's settings rather than from its row.

The queue keeps each tenant's state in its row: the token bucket of engine seconds
(`budget_seconds` at `budget_at`) and the fair-queuing clocks (`next_turn`,
`next_batch_turn`); `db.submissions` and `db.claims` update them.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from db import errors

ANONYMOUS_ID = uuid.UUID(int=0)
"""The anonymous tenant's row: requests without a key, when the API admits them."""

ANALYSE = "analyse"
"""Scope: submit, read and cancel one's own work."""
ADMIN = "admin"
"""Scope: everyone's work, the workers in queue statistics, the metrics."""

MIN_CHARGE_SECONDS = 0.01
"""What a submission answered without an engine (no legal moves) costs."""

SECRET_PREFIX = "cak_"
"""Begins every secret, so a key is recognisable in a configuration or a leak scanner."""


@dataclass(frozen=True)
class Quotas:
    """What a tenant may use; None means no limit."""

    max_queued: int | None = None
    """Analyses it may have waiting at once."""
    engine_seconds_per_hour: float | None = None
    """Engine time (the sum of its requests' time limits) it may be charged per hour,
    with a burst of as much at once."""
    weight: float = 1.0
    """Its share of the workers' slots while several tenants have work waiting."""


@dataclass(frozen=True)
class Tenant:
    """Who submits work: an API key, or the anonymous tenant."""

    id: uuid.UUID
    name: str
    scopes: frozenset[str]
    quotas: Quotas = field(default_factory=Quotas)
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        """True when it may see and cancel everyone's work."""
        return ADMIN in self.scopes

    @property
    def is_anonymous(self) -> bool:
        """True for the shared tenant of requests without a key."""
        return self.id == ANONYMOUS_ID


@dataclass(frozen=True)
class Usage:
    """What a tenant has in the queue and what it has used."""

    queued: int
    """Its analyses waiting for a worker."""
    running: int
    """Its analyses a worker is running."""
    engine_seconds_available: float | None
    """Engine seconds it may still be charged now; None without an engine-seconds quota."""
    engine_seconds_last_hour: float
    """Engine time its analyses that finished in the last hour took."""


def new_secret() -> str:
    """A new random secret (256 bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What is stored of a secret: its SHA-256, hexadecimal."""
    return hashlib.sha256(secret.encode()).hexdigest()


def tenant_from(record: Any) -> Tenant:
    """The tenant of an `api_keys` row."""
    return Tenant(
        id=record["id"],
        name=record["name"],
        scopes=frozenset(record["scopes"]),
        quotas=Quotas(
            max_queued=record["max_queued"],
            engine_seconds_per_hour=record["engine_seconds_per_hour"],
            weight=record["weight"],
        ),
        created_at=record["created_at"],
        revoked_at=record["revoked_at"],
    )


COLUMNS = """id, name, scopes, max_queued, engine_seconds_per_hour, weight,
             created_at, revoked_at"""

CREATE = f"""
    INSERT INTO api_keys (name, secret_hash, scopes, max_queued, engine_seconds_per_hour,
                          weight)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING {COLUMNS}
    """


@errors.translated
async def create(
    pool: asyncpg.Pool, name: str, *, admin: bool = False, quotas: Quotas = Quotas()
) -> tuple[Tenant, str]:
    """A new key named `name`: the tenant, and its secret (shown this once, never stored).

    ValueError when the name is taken (even by a revoked key) or a quota is not positive.
    """
    if not name.strip():
        raise ValueError("a key needs a name")
    if quotas.max_queued is not None and quotas.max_queued < 1:
        raise ValueError(f"max queued must be at least 1, not {quotas.max_queued}")
    if quotas.engine_seconds_per_hour is not None and not quotas.engine_seconds_per_hour > 0:
        raise ValueError(
            f"engine seconds per hour must be positive, not {quotas.engine_seconds_per_hour}"
        )
    if not quotas.weight > 0:
        raise ValueError(f"the weight must be positive, not {quotas.weight}")
    secret = new_secret()
    scopes = [ANALYSE, ADMIN] if admin else [ANALYSE]
    try:
        record = await pool.fetchrow(
            CREATE,
            name,
            hash_secret(secret),
            scopes,
            quotas.max_queued,
            quotas.engine_seconds_per_hour,
            quotas.weight,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ValueError(f"a key named {name!r} exists already") from exc
    return tenant_from(record), secret


LIST_ALL = f"SELECT {COLUMNS} FROM api_keys WHERE id <> $1 ORDER BY created_at, name"


@errors.translated
async def list_all(pool: asyncpg.Pool) -> list[Tenant]:
    """Every key, revoked ones included, oldest first; not the anonymous tenant."""
    return [tenant_from(record) for record in await pool.fetch(LIST_ALL, ANONYMOUS_ID)]


REVOKE = """
    UPDATE api_keys SET revoked_at = now()
     WHERE name = $1 AND revoked_at IS NULL AND id <> $2
    RETURNING id
    """


@errors.translated
async def revoke(pool: asyncpg.Pool, name: str) -> bool:
    """Revoke the key named `name`; False when there is no such key that is not revoked.

    Its work stays in the queue and runs; new requests with it are refused.
    """
    return await pool.fetchval(REVOKE, name, ANONYMOUS_ID) is not None


BY_SECRET = f"""
    SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL
    """


@errors.translated
async def by_secret(pool: asyncpg.Pool, secret: str) -> Tenant | None:
    """The tenant whose secret this is; None for an unknown or revoked one."""
    record = await pool.fetchrow(BY_SECRET, hash_secret(secret))
    return None if record is None else tenant_from(record)


USAGE = """
    -- $1 the tenant; $2 its engine seconds per hour (NULL: no such quota)
    SELECT (SELECT count(*) FROM analyses
             WHERE tenant_id = $1 AND status = 'queued') AS queued,
           (SELECT count(*) FROM analyses
             WHERE tenant_id = $1 AND status = 'running') AS running,
           -- the bucket: refilled at $2/3600 a second since it was last charged, up to $2
           (SELECT CASE WHEN $2::float8 IS NULL THEN NULL
                        WHEN budget_seconds IS NULL THEN $2::float8
                        ELSE least($2::float8, budget_seconds
                                   + extract(epoch from now() - budget_at) * $2::float8 / 3600)
                   END
              FROM api_keys WHERE id = $1) AS available,
           (SELECT coalesce(sum(extract(epoch from finished_at - started_at)), 0)
              FROM analyses
             WHERE tenant_id = $1 AND finished_at > now() - interval '1 hour'
               AND started_at IS NOT NULL) AS last_hour
    """


@errors.translated
async def usage(pool: asyncpg.Pool, tenant: Tenant) -> Usage:
    """What `tenant` has in the queue now and used in the last hour.

    The engine-seconds cap is `tenant.quotas` (for the anonymous tenant, the API's
    settings), not its row's.
    """
    record = await pool.fetchrow(USAGE, tenant.id, tenant.quotas.engine_seconds_per_hour)
    available = record["available"]
    if available is None and tenant.quotas.engine_seconds_per_hour is not None:
        available = tenant.quotas.engine_seconds_per_hour  # no row: never charged
    return Usage(
        queued=record["queued"],
        running=record["running"],
        engine_seconds_available=None if available is None else max(0.0, float(available)),
        engine_seconds_last_hour=float(record["last_hour"]),
    )
