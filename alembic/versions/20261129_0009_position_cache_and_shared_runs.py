"""The position cache, shared runs, search progress and node limits.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

- `position_cache`: the best finished search of each position (its normalised key,
  python-chess `board.epd()`) for each number of lines asked: how deep, how many nodes
  and how long it searched, its lines and engine. Written by the worker's exchange when
  an analysis is done; read by submissions, which are answered from it at once.
- `analyses.position_key` (the same key), `nodes_limit`, `cached` (answered from the
  cache), and the columns of shared runs: `share_key` (the key and every limit; NULL
  when the request must not be shared), `run_id` (the id under which its run is queued
  and claimed; NULL: its own) and `follows` (the row waits on another row's run and is
  never claimed itself). The status changes of a row that carries a shareable run are
  copied to the rows that follow it by `analyses_share_run`.
- `analysis_progress` (UNLOGGED: lost on a crash, like the searches it describes): the
  latest report of each run someone watches. API processes keep `watched_until` ahead
  while they have listeners; a worker publishes into it only then.
- The claim index leaves followers out; `ix_analyses_active_run` (unique) allows one
  joinable run per share key, so that requests arriving together join one run instead
  of racing to start several; `ix_analyses_run` finds a run's rows.
- Followers do not wake workers (`analyses_notify`), and a cancellation is announced
  under the run's id (`analyses_notify_cancel`), the one its worker knows.

The indexes are built CONCURRENTLY and the claim index swapped in by a rename, as in
0008; every step can run again after a failure part way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMABLE = sa.text("status = 'queued' AND NOT follows")
JOINABLE = sa.text(
    "share_key IS NOT NULL AND NOT follows AND status IN ('queued', 'running')"
    " AND cancel_requested_at IS NULL"
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS position_cache (
            position_key text NOT NULL,
            lines smallint NOT NULL,
            depth integer NOT NULL,
            nodes bigint NOT NULL,
            seconds double precision NOT NULL,
            result jsonb NOT NULL,
            engine text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (position_key, lines)
        )
        """
    )
    op.execute(
        """
        CREATE UNLOGGED TABLE IF NOT EXISTS analysis_progress (
            run_id uuid PRIMARY KEY,
            watched_until timestamptz NOT NULL,
            depth integer,
            nodes bigint,
            elapsed double precision,
            lines jsonb,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        ALTER TABLE analyses
            ADD COLUMN IF NOT EXISTS position_key text,
            ADD COLUMN IF NOT EXISTS nodes_limit bigint,
            ADD COLUMN IF NOT EXISTS cached boolean NOT NULL DEFAULT false,
            ADD COLUMN IF NOT EXISTS share_key text,
            ADD COLUMN IF NOT EXISTS run_id uuid,
            ADD COLUMN IF NOT EXISTS follows boolean NOT NULL DEFAULT false
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION analyses_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND NEW.status = OLD.status THEN
                RETURN NULL;
            END IF;
            IF NEW.status = 'queued' THEN
                -- a follower is never claimed: nothing for a worker to do
                IF NOT NEW.follows THEN
                    PERFORM pg_notify('analysis_queued', '');
                END IF;
            ELSIF NEW.status IN ('done', 'failed', 'canceled') THEN
                PERFORM pg_notify('analysis_done', NEW.id::text);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION analyses_notify_cancel() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('analysis_cancel', coalesce(NEW.run_id, NEW.id)::text);
            RETURN NULL;
        END $$
        """
    )
    # A run's followers take its status, started, result, engine and error, whenever
    # its carrier's status changes (claimed, given back, finished). A function's
    # statements read with a snapshot of their own: a follower that joined while the
    # statement changing the carrier waited for the carrier's lock is seen. Followers
    # are found by the small partial index on `run_id` (followers only, and carriers
    # that handed over): a probe, for every status change of a shareable row.
    op.execute(
        """
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
                   finished_at = NEW.finished_at
             WHERE f.run_id = coalesce(NEW.run_id, NEW.id) AND f.follows
               AND f.status IN ('queued', 'running');
            RETURN NULL;
        END $$
        """
    )
    op.execute("DROP TRIGGER IF EXISTS analyses_share_run ON analyses")
    op.execute(
        """
        CREATE TRIGGER analyses_share_run AFTER UPDATE OF status ON analyses
        FOR EACH ROW
        WHEN (NEW.share_key IS NOT NULL AND NOT NEW.follows
              AND NEW.status IS DISTINCT FROM OLD.status)
        EXECUTE FUNCTION analyses_share_run()
        """
    )

    with op.get_context().autocommit_block():
        rebuild_index("ix_analyses_claim_next", ["turn"], where=CLAIMABLE)
        op.drop_index(
            "ix_analyses_claim", table_name="analyses", if_exists=True, postgresql_concurrently=True
        )
        op.execute("ALTER INDEX ix_analyses_claim_next RENAME TO ix_analyses_claim")
        rebuild_index("ix_analyses_active_run", ["share_key"], where=JOINABLE, unique=True)
        rebuild_index("ix_analyses_run", ["run_id"], where=sa.text("run_id IS NOT NULL"))


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in ("ix_analyses_run", "ix_analyses_active_run"):
            op.drop_index(name, table_name="analyses", if_exists=True, postgresql_concurrently=True)
        rebuild_index("ix_analyses_claim_next", ["turn"], where=sa.text("status = 'queued'"))
        op.drop_index(
            "ix_analyses_claim", table_name="analyses", if_exists=True, postgresql_concurrently=True
        )
        op.execute("ALTER INDEX ix_analyses_claim_next RENAME TO ix_analyses_claim")
    op.execute("DROP TRIGGER IF EXISTS analyses_share_run ON analyses")
    op.execute("DROP FUNCTION IF EXISTS analyses_share_run()")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION analyses_notify_cancel() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('analysis_cancel', NEW.id::text);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION analyses_notify() RETURNS trigger LANGUAGE plpgsql AS $$
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
        ALTER TABLE analyses
            DROP COLUMN IF EXISTS follows,
            DROP COLUMN IF EXISTS run_id,
            DROP COLUMN IF EXISTS share_key,
            DROP COLUMN IF EXISTS cached,
            DROP COLUMN IF EXISTS nodes_limit,
            DROP COLUMN IF EXISTS position_key
        """
    )
    op.execute("DROP TABLE IF EXISTS analysis_progress")
    op.execute("DROP TABLE IF EXISTS position_cache")


def rebuild_index(
    name: str,
    columns: list[str | sa.TextClause],
    where: sa.TextClause | None = None,
    unique: bool = False,
) -> None:
    """Drop (an invalid leftover, or the index itself) and build `name` CONCURRENTLY."""
    op.drop_index(name, table_name="analyses", if_exists=True, postgresql_concurrently=True)
    op.create_index(
        name,
        "analyses",
        columns,
        unique=unique,
        postgresql_where=where,
        postgresql_concurrently=True,
    )
