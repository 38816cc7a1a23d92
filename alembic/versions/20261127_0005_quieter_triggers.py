"""Fire the notify trigger only for changes that notify.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

A claim (queued → running) called the notify function for every row only for it to
return at once. Two triggers with WHEN conditions now call it only when a row enters
the queue or reaches done, failed or canceled; what they send is unchanged.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFYING = "('queued', 'done', 'failed', 'canceled')"


def upgrade() -> None:
    op.execute("DROP TRIGGER analyses_notify ON analyses")
    op.execute(
        f"""
        CREATE TRIGGER analyses_notify_insert AFTER INSERT ON analyses
        FOR EACH ROW WHEN (NEW.status IN {NOTIFYING})
        EXECUTE FUNCTION analyses_notify()
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER analyses_notify_update AFTER UPDATE OF status ON analyses
        FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN {NOTIFYING})
        EXECUTE FUNCTION analyses_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER analyses_notify_update ON analyses")
    op.execute("DROP TRIGGER analyses_notify_insert ON analyses")
    op.execute(
        """
        CREATE TRIGGER analyses_notify AFTER INSERT OR UPDATE OF status ON analyses
        FOR EACH ROW EXECUTE FUNCTION analyses_notify()
        """
    )
