"""Index only finished rows by `finished_at`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

The "finished in the last minute" count only ever looks at finished rows, yet every
claim (and every insert) added an entry for a NULL `finished_at`: one index write per
claim on the queue's hottest path. Partial, the index is written when a row finishes.

Both directions drop the index and build the new one `CONCURRENTLY`, outside a
transaction, so submissions, claims and finishes go on while it is built; in between,
the count reads the table without an index. A failed build (a lock timeout while it
waits for a long transaction, a cancel) leaves an INVALID `ix_analyses_finished_at`
behind and `alembic_version` at the previous revision: find the long transaction in
`pg_stat_activity` (or wait for it to end) and run `chess-analysis-migrate` again.
The drop uses `IF EXISTS` and so also removes the invalid index; the build has no
`IF NOT EXISTS`, which would keep that invalid index in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rebuild_finished_index(sa.text("finished_at IS NOT NULL"))


def downgrade() -> None:
    rebuild_finished_index(None)


def rebuild_finished_index(where: sa.TextClause | None) -> None:
    """Drop and build the index again, both CONCURRENTLY (outside a transaction), so
    that claims and finishes go on meanwhile; `where` makes it partial."""
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_analyses_finished_at",
            table_name="analyses",
            if_exists=True,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_analyses_finished_at",
            "analyses",
            ["finished_at"],
            postgresql_where=where,
            postgresql_concurrently=True,
        )
