"""Retries with backoff, a per-row attempt limit, cancellation requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

- `run_after`: a queued row is not claimed before this time (retry backoff);
- `max_attempts`: claims allowed before a row whose worker keeps dying is failed;
- `cancel_requested_at`: set when a client cancels a running row; the owning worker
  is told through `NOTIFY analysis_cancel` (payload: the id);
- a partial index over running rows serves the lease sweep and the heartbeat.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "analyses",
        sa.Column(
            "run_after", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.add_column(
        "analyses",
        sa.Column("max_attempts", sa.SmallInteger(), nullable=False, server_default=sa.text("3")),
    )
    op.add_column(
        "analyses", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_analyses_lease",
        "analyses",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'running'"),
    )
    op.execute(
        """
        CREATE FUNCTION analyses_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('analysis_cancel', NEW.id::text);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER analyses_notify_cancel AFTER UPDATE OF cancel_requested_at ON analyses
        FOR EACH ROW
        WHEN (NEW.status = 'running' AND NEW.cancel_requested_at IS NOT NULL
              AND OLD.cancel_requested_at IS NULL)
        EXECUTE FUNCTION analyses_notify_cancel()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER analyses_notify_cancel ON analyses")
    op.execute("DROP FUNCTION analyses_notify_cancel()")
    op.drop_index("ix_analyses_lease", table_name="analyses")
    op.drop_column("analyses", "cancel_requested_at")
    op.drop_column("analyses", "max_attempts")
    op.drop_column("analyses", "run_after")
