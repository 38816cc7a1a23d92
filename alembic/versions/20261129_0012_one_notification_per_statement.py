"""Completions told once per statement: `analysis_done` carries the ids a statement ended.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

A worker's statement ends the claims of many rows at once (`db.claims.EXCHANGE`), and a
row trigger sent an `analysis_done` notification for each: a `pg_notify` call per row in
the statement (about a sixth of the server's time per job in the queue benchmark), and
one message per finished analysis to every API process's LISTEN connection.

`analyses_notify_update` is now a statement trigger with transition tables: after an
UPDATE it sends one `analysis_done` per 200 rows that reached done, failed or canceled
(the payload: their ids, comma-separated, at most 7,400 bytes of the 8,000 a payload may
hold), one `analysis_queued` if any row went back to the queue (not a follower), and one
`game_progress` per game with a position among them. Inserts keep their row trigger (a
submission stores one row, or a game's positions, each with the id of its own).

Readers split the payload (`db.notifications.parse_ids_payload`); an id alone is the
same payload as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDS_PER_NOTIFICATION = 200

NOTIFY_ENDS = f"""
    CREATE OR REPLACE FUNCTION analyses_notify_ends() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        ended uuid[];
        games uuid[];
        requeued boolean;
        game uuid;
    BEGIN
        -- one pass over the rows whose status the statement changed
        SELECT array_agg(n.id) FILTER (WHERE n.status IN ('done', 'failed', 'canceled')),
               array_agg(DISTINCT n.game_id)
                   FILTER (WHERE n.status IN ('done', 'failed', 'canceled')
                             AND n.game_id IS NOT NULL),
               -- a follower is never claimed: nothing for a worker to do
               coalesce(bool_or(n.status = 'queued' AND NOT n.follows), false)
          INTO ended, games, requeued
          FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
         WHERE n.status IS DISTINCT FROM o.status;
        FOR i IN 1 .. coalesce(array_length(ended, 1), 0) BY {IDS_PER_NOTIFICATION} LOOP
            PERFORM pg_notify('analysis_done', array_to_string(
                ended[i : i + {IDS_PER_NOTIFICATION - 1}], ','));
        END LOOP;
        FOREACH game IN ARRAY coalesce(games, '{{}}') LOOP
            PERFORM pg_notify('game_progress', game::text);
        END LOOP;
        IF requeued THEN
            PERFORM pg_notify('analysis_queued', '');
        END IF;
        RETURN NULL;
    END $$
    """


def upgrade() -> None:
    op.execute(NOTIFY_ENDS)
    op.execute("DROP TRIGGER IF EXISTS analyses_notify_update ON analyses")
    op.execute(
        """
        CREATE TRIGGER analyses_notify_update AFTER UPDATE ON analyses
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION analyses_notify_ends()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS analyses_notify_update ON analyses")
    op.execute(
        """
        CREATE TRIGGER analyses_notify_update AFTER UPDATE OF status ON analyses
        FOR EACH ROW
        WHEN (NEW.status IS DISTINCT FROM OLD.status
              AND NEW.status IN ('queued', 'done', 'failed', 'canceled'))
        EXECUTE FUNCTION analyses_notify()
        """
    )
    op.execute("DROP FUNCTION IF EXISTS analyses_notify_ends()")
