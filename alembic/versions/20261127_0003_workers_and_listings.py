"""Worker heartbeat rows; indexes for listings and queue statistics.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

- `workers`: one row per worker process, refreshed by its heartbeat; a row whose
  `expires_at` has passed belongs to a dead worker and is removed by the sweep;
- `ix_analyses_listing` / `ix_analyses_status_listing`: newest-first keyset pagination,
  over everything or one status;
- `ix_analyses_finished_at`: "finished in the last minute".
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("engine", sa.Text(), nullable=True),
        sa.Column("listening", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_analyses_listing",
        "analyses",
        [sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_analyses_status_listing",
        "analyses",
        ["status", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index("ix_analyses_finished_at", "analyses", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_analyses_finished_at", table_name="analyses")
    op.drop_index("ix_analyses_status_listing", table_name="analyses")
    op.drop_index("ix_analyses_listing", table_name="analyses")
    op.drop_table("workers")
