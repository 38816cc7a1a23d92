"""Tenants: API keys with quotas, and a queue that takes turns among them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

- `api_keys`: one row per key (only the SHA-256 of its secret), its scopes and quotas,
  and the queue's state for it: the token bucket of engine seconds (`budget_seconds`
  as of `budget_at`; NULL: full) and the fair-queuing clocks `next_turn` (interactive
  work) and `next_batch_turn` (batch work). A fixed row, `anonymous`, with no secret,
  holds the work of requests without a key and the rows stored before this migration.
- `analyses.tenant_id` (the anonymous tenant by default, so an insert that names no
  tenant still works), `kind` (0 interactive, 1 batch) and `turn`, the virtual time the
  claim orders by (by default the time of the insert, in epoch seconds). Rows queued
  before the migration take their age as their turn; the turns of finished rows are
  the migration's time and order nothing.
- The claim index becomes `(turn) WHERE status = 'queued'` under the same name;
  `ix_analyses_tenant_queued` serves each tenant's queued-work quota, and
  `ix_analyses_tenant_listing` the newest-first listing of each keyed tenant
  (anonymous work is never listed by tenant, and stays out of it).

`tenant_id` has no foreign key: keys are revoked, never deleted, and a submission
updates its tenant's row before it inserts, so the key would guard hand-written inserts
only, for a lookup and a lock of the tenant's row per inserted row (a quarter of a bulk
insert's time).

The table change takes a brief exclusive lock (the new columns have constant or stable
defaults: no rewrite). The indexes are built CONCURRENTLY: the new claim index is built
under a new name before the old one is dropped and it is renamed, so the claim is never
without an index. Every step can run again after a failure part way (a lock timeout):
run `chess-analysis-migrate` again.

`priority` is no longer read; it stays so that workers of the previous release keep
working while a deploy rolls out.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANONYMOUS_ID = "00000000-0000-0000-0000-000000000000"
QUEUED = sa.text("status = 'queued'")
KEYED = sa.text(f"tenant_id <> '{ANONYMOUS_ID}'::uuid")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS api_keys (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name text NOT NULL UNIQUE,
            secret_hash text UNIQUE,
            scopes text[] NOT NULL DEFAULT '{analyse}',
            max_queued integer CHECK (max_queued > 0),
            engine_seconds_per_hour double precision CHECK (engine_seconds_per_hour > 0),
            weight double precision NOT NULL DEFAULT 1 CHECK (weight > 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz,
            budget_seconds double precision,
            budget_at timestamptz,
            next_turn double precision NOT NULL DEFAULT 0,
            next_batch_turn double precision NOT NULL DEFAULT 0,
            queued_total bigint NOT NULL DEFAULT 0
        )
        """
    )
    op.execute(
        f"""
        INSERT INTO api_keys (id, name) VALUES ('{ANONYMOUS_ID}', 'anonymous')
        ON CONFLICT DO NOTHING
        """
    )
    op.execute(
        f"""
        ALTER TABLE analyses
            ADD COLUMN IF NOT EXISTS tenant_id uuid NOT NULL DEFAULT '{ANONYMOUS_ID}',
            ADD COLUMN IF NOT EXISTS kind smallint NOT NULL DEFAULT 0,
            ADD COLUMN IF NOT EXISTS turn double precision NOT NULL
                DEFAULT extract(epoch FROM now())
        """
    )

    with op.get_context().autocommit_block():
        # Over the claim index, and after the exclusive lock is gone: only what waits
        # needs its place in the line.
        op.execute(
            "UPDATE analyses SET turn = extract(epoch FROM created_at) WHERE status = 'queued'"
        )
        replace_claim_index(["turn"])
        rebuild_index("ix_analyses_tenant_queued", ["tenant_id", "turn"], where=QUEUED)
        rebuild_index(
            "ix_analyses_tenant_listing",
            ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
            where=KEYED,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in ("ix_analyses_tenant_listing", "ix_analyses_tenant_queued"):
            op.drop_index(name, table_name="analyses", if_exists=True, postgresql_concurrently=True)
        replace_claim_index([sa.text("priority DESC"), "created_at"])
    op.execute(
        """
        ALTER TABLE analyses
            DROP COLUMN IF EXISTS turn,
            DROP COLUMN IF EXISTS kind,
            DROP COLUMN IF EXISTS tenant_id
        """
    )
    op.execute("DROP TABLE IF EXISTS api_keys")


def rebuild_index(
    name: str, columns: list[str | sa.TextClause], where: sa.TextClause | None = None
) -> None:
    """Drop (an invalid leftover, or the index itself) and build `name` CONCURRENTLY."""
    op.drop_index(name, table_name="analyses", if_exists=True, postgresql_concurrently=True)
    op.create_index(name, "analyses", columns, postgresql_where=where, postgresql_concurrently=True)


def replace_claim_index(columns: list[str | sa.TextClause]) -> None:
    """Make `ix_analyses_claim` an index over `columns` of the queued rows, never leaving
    the claim without one: built under another name, then swapped in by a rename (which
    blocks no reads or writes)."""
    rebuild_index("ix_analyses_claim_next", columns, where=QUEUED)
    op.drop_index(
        "ix_analyses_claim", table_name="analyses", if_exists=True, postgresql_concurrently=True
    )
    op.execute("ALTER INDEX ix_analyses_claim_next RENAME TO ix_analyses_claim")
