"""Lighter writes of a row's claim and end: no per-row trigger for `updated_at`, no lease
index, the ending rule inlined.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

Every analysis is written twice on its way through the queue (claimed, ended), and a
status change can never be a HOT update, so each write pays for every index it enters
and every row trigger it fires. Two of them did little for their price:

- `analyses_touch`, a BEFORE UPDATE row trigger setting `updated_at`: one PL/pgSQL call
  per row written. The service's statements that change a row now set `updated_at`
  themselves (a change made by hand sets it too, or leaves it as it was).
- `ix_analyses_lease` (running rows by lease expiry): an index entry per claim, and it
  made every heartbeat's lease renewal a non-HOT update. The sweep finds running rows
  through `ix_analyses_status_listing` (status first): they are as many as the slots
  and the rows claimed ahead, a few thousand at most.

And `analysis_ending_status` (migration 0007) was meant to be inlined by the planner, but
its `ending::analysis_status` cast (text to enum, a stable function) kept an immutable
SQL function from being inlined: three calls of a SQL function per row ended. It now
compares the text and returns enum constants: the same rule, inlined.

On a queue of no-op jobs this takes about a tenth off the database's time per job
(docs/benchmarks.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARE_RUN = """
    CREATE OR REPLACE FUNCTION analyses_share_run() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE analyses AS f
           SET status = NEW.status,
               started_at = CASE WHEN NEW.status = 'queued' THEN f.started_at
                                 ELSE coalesce(NEW.started_at, f.started_at) END,
               result = NEW.result,
               engine = NEW.engine,
               error = NEW.error,
               finished_at = NEW.finished_at%s
         WHERE f.run_id = coalesce(NEW.run_id, NEW.id) AND f.follows
           AND f.status IN ('queued', 'running');
        RETURN NULL;
    END $$
    """


ENDING_STATUS = """
    CREATE OR REPLACE FUNCTION analysis_ending_status(
        ending text, cancel_requested boolean, attempts integer, max_attempts integer
    ) RETURNS analysis_status LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN ending = 'done' THEN 'done'::analysis_status
            WHEN ending = 'failed' THEN 'failed'::analysis_status
            WHEN ending = 'canceled' THEN 'canceled'::analysis_status
            -- given back: 'retry' (the engine died), 'released' (the worker stops; the
            -- claim does not count), 'lost' (the lease lapsed)
            WHEN cancel_requested THEN 'canceled'::analysis_status
            WHEN ending = 'released' OR attempts < max_attempts THEN 'queued'::analysis_status
            ELSE 'failed'::analysis_status
        END
    $$
    """
ENDING_STATUS_0007 = """
    CREATE OR REPLACE FUNCTION analysis_ending_status(
        ending text, cancel_requested boolean, attempts integer, max_attempts integer
    ) RETURNS analysis_status LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN ending IN ('done', 'failed', 'canceled') THEN ending::analysis_status
            WHEN cancel_requested THEN 'canceled'
            WHEN ending = 'released' OR attempts < max_attempts THEN 'queued'
            ELSE 'failed'
        END::analysis_status
    $$
    """


def upgrade() -> None:
    op.execute(ENDING_STATUS)
    op.execute(SHARE_RUN % ",\n               updated_at = now()")
    op.execute("DROP TRIGGER IF EXISTS analyses_touch ON analyses")
    op.execute("DROP FUNCTION IF EXISTS analyses_touch()")
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_analyses_lease", table_name="analyses", if_exists=True, postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_analyses_lease", table_name="analyses", if_exists=True, postgresql_concurrently=True
        )
        op.create_index(
            "ix_analyses_lease",
            "analyses",
            ["lease_expires_at"],
            postgresql_where=sa.text("status = 'running'"),
            postgresql_concurrently=True,
        )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION analyses_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END $$
        """
    )
    op.execute("DROP TRIGGER IF EXISTS analyses_touch ON analyses")
    op.execute(
        """
        CREATE TRIGGER analyses_touch BEFORE UPDATE ON analyses
        FOR EACH ROW EXECUTE FUNCTION analyses_touch()
        """
    )
    op.execute(SHARE_RUN % "")
    op.execute(ENDING_STATUS_0007)
