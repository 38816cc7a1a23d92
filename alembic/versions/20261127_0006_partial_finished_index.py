"""Index only finished rows by `finished_at`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

The "finished in the last minute" count only ever looks at finished rows, yet every
claim (and every insert) added an entry for a NULL `finished_at`: one index write per
claim on the queue's hottest path. Partial, the index is written when a row finishes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_analyses_finished_at", table_name="analyses")
    op.create_index(
        "ix_analyses_finished_at",
        "analyses",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_analyses_finished_at", table_name="analyses")
    op.create_index("ix_analyses_finished_at", "analyses", ["finished_at"])
