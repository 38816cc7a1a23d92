"""Create the analyses table, its claim index and the triggers that notify.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Notifications come from triggers rather than application code, so a row fixed by hand
in psql still wakes workers and subscribers:

- `analysis_queued` (empty payload) when a row enters the queue: idle workers wake;
- `analysis_done` (payload: the id) when a row reaches done, failed or canceled.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("queued", "running", "done", "failed", "canceled")


def upgrade() -> None:
    status = postgresql.ENUM(*STATUSES, name="analysis_status", create_type=False)
    status.create(op.get_bind())
    op.create_table(
        "analyses",
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column("fen", sa.Text(), nullable=False),
        sa.Column("num_moves_to_return", sa.Integer(), nullable=False),
        sa.Column("time_limit", sa.Float(), nullable=False),
        sa.Column("depth_limit", sa.Integer(), nullable=True),
        sa.Column("status", status, nullable=False, server_default="queued"),
        sa.Column("priority", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("engine", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index(
        "ix_analyses_claim",
        "analyses",
        [sa.text("priority DESC"), "created_at"],
        postgresql_where=sa.text("status = 'queued'"),
    )

    # updated_at follows every change, including those made by hand.
    op.execute(
        """
        CREATE FUNCTION analyses_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER analyses_touch BEFORE UPDATE ON analyses
        FOR EACH ROW EXECUTE FUNCTION analyses_touch()
        """
    )

    # One notification per state change that someone waits for. Postgres folds identical
    # notifications of one transaction into one, so a bulk insert wakes workers once.
    op.execute(
        """
        CREATE FUNCTION analyses_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND NEW.status = OLD.status THEN
                RETURN NULL;
            END IF;
            IF NEW.status = 'queued' THEN
                PERFORM pg_notify('analysis_queued', '');
            ELSIF NEW.status IN ('done', 'failed', 'canceled') THEN
                PERFORM pg_notify('analysis_done', NEW.id::text);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER analyses_notify AFTER INSERT OR UPDATE OF status ON analyses
        FOR EACH ROW EXECUTE FUNCTION analyses_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER analyses_notify ON analyses")
    op.execute("DROP FUNCTION analyses_notify()")
    op.execute("DROP TRIGGER analyses_touch ON analyses")
    op.execute("DROP FUNCTION analyses_touch()")
    op.drop_index("ix_analyses_claim", table_name="analyses")
    op.drop_table("analyses")
    postgresql.ENUM(name="analysis_status").drop(op.get_bind())
