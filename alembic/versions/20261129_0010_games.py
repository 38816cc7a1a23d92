"""Whole games: a game's request, and its positions as analyses.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

- `games`: one row per submitted game: its tenant, headers, start position, the moves
  played (each with its SAN and the position before it), the limits every position is
  analysed with, the opening it reaches, and when it was canceled. Its status and
  progress are not stored: they are read from its positions, so no statement that ends
  an analysis has a game row to update (and to wait for).
- `analyses.game_id` and `ply`: a position of a game (0: the start, n: after the n-th
  move), one analysis each, through the position cache and shared runs like any other.
  `ix_analyses_game` reads a game's positions in order.
- `analyses_notify` also sends `game_progress` (payload: the game's id) when a game's
  position is done, failed or canceled; notifications of one transaction fold into one
  per game.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY = """
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
            %s
        END IF;
        RETURN NULL;
    END $$
    """
GAME_PROGRESS = """IF NEW.game_id IS NOT NULL THEN
                PERFORM pg_notify('game_progress', NEW.game_id::text);
            END IF;"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS games (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            tenant_id uuid NOT NULL,
            headers jsonb NOT NULL DEFAULT '[]',
            initial_fen text NOT NULL,
            moves jsonb NOT NULL DEFAULT '[]',
            num_moves_to_return integer NOT NULL,
            time_limit double precision NOT NULL,
            depth_limit integer,
            nodes_limit bigint,
            opening_eco text,
            opening_name text,
            created_at timestamptz NOT NULL DEFAULT now(),
            canceled_at timestamptz
        )
        """
    )
    op.execute(
        """
        ALTER TABLE analyses
            ADD COLUMN IF NOT EXISTS game_id uuid,
            ADD COLUMN IF NOT EXISTS ply smallint
        """
    )
    op.execute(NOTIFY % GAME_PROGRESS)
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_games_tenant_listing",
            table_name="games",
            if_exists=True,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_games_tenant_listing",
            "games",
            ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_analyses_game",
            table_name="analyses",
            if_exists=True,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_analyses_game",
            "analyses",
            ["game_id", "ply"],
            postgresql_where=sa.text("game_id IS NOT NULL"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_analyses_game",
            table_name="analyses",
            if_exists=True,
            postgresql_concurrently=True,
        )
    op.execute(NOTIFY % "")
    op.execute("ALTER TABLE analyses DROP COLUMN IF EXISTS ply, DROP COLUMN IF EXISTS game_id")
    op.execute("DROP TABLE IF EXISTS games")
