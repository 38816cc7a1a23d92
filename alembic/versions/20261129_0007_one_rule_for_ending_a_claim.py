"""One rule for how a claim ends.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

`analysis_ending_status(ending, cancel_requested, attempts, max_attempts)` is the status
a running row takes when its claim ends. A result, a failure or a cancellation is what it
says. A row given back (its engine died, its worker stops, its lease lapsed) follows the
retry-or-give-up rule, written here once: a cancellation asked for wins; else it goes
back to the queue while attempts are left (a worker that stops does not spend one);
else it fails. The worker's outcome statement and the lease sweep both call it, so the
two can never disagree. An immutable SQL function: the planner inlines it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION analysis_ending_status(
            ending text, cancel_requested boolean, attempts integer, max_attempts integer
        ) RETURNS analysis_status LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT CASE
                WHEN ending IN ('done', 'failed', 'canceled') THEN ending::analysis_status
                -- given back: 'retry' (the engine died), 'released' (the worker
                -- stops; the claim does not count), 'lost' (the lease lapsed)
                WHEN cancel_requested THEN 'canceled'
                WHEN ending = 'released' OR attempts < max_attempts THEN 'queued'
                ELSE 'failed'
            END::analysis_status
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION analysis_ending_status(text, boolean, integer, integer)")
