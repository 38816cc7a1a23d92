"""The progress of searches someone watches: API processes say who watches, workers
publish what their engines report.

`analysis_progress` (an UNLOGGED table: progress is worth nothing after a crash) holds
one row per watched run: until when someone wants it (`watched_until`, kept ahead by
the API processes while they have listeners), and the latest report of its search.
A worker publishes only into a row that is watched, and at most a few times a second;
each publication sends `analysis_progress` with the run's id, and the listening API
processes read the row once for all their listeners. The notification carries the id
only, so PostgreSQL's limit on a payload (8000 bytes) holds whatever the lines.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from db import errors
from db.models import ResultLine

WATCH = """
    -- $1 the runs, $2 seconds: watched until then at least; the worker running a run
    -- that was not watched is told
    WITH was AS (
        SELECT run_id FROM analysis_progress
         WHERE run_id = ANY ($1::uuid[]) AND watched_until > now()
    ),
    watched AS (
        INSERT INTO analysis_progress AS p (run_id, watched_until)
        SELECT run, now() + make_interval(secs => $2) FROM unnest($1::uuid[]) AS run
        ON CONFLICT (run_id) DO UPDATE
           SET watched_until = greatest(p.watched_until, excluded.watched_until)
        RETURNING run_id
    )
    SELECT pg_notify('analysis_watch', run_id::text)
      FROM watched WHERE run_id NOT IN (SELECT run_id FROM was)
    """

FORGET = """
    -- rows nobody has watched for a while (their runs ended, or their listeners left)
    DELETE FROM analysis_progress WHERE watched_until < now() - make_interval(secs => $1)
    """

READ = """
    SELECT run_id, depth, nodes, elapsed, lines FROM analysis_progress
     WHERE run_id = ANY ($1::uuid[]) AND depth IS NOT NULL
    """

PUBLISH = """
    -- $1 the run, $2 depth, $3 nodes, $4 seconds searched, $5 the lines; only while
    -- watched (no row: nobody listens any more)
    WITH published AS (
        UPDATE analysis_progress
           SET depth = $2, nodes = $3, elapsed = $4, lines = $5::jsonb, updated_at = now()
         WHERE run_id = $1 AND watched_until > now()
        RETURNING run_id
    )
    SELECT pg_notify('analysis_progress', run_id::text) IS NOT NULL AS watched FROM published
    """


@dataclass(frozen=True)
class Progress:
    """A search as it stood at its latest report."""

    run: uuid.UUID
    depth: int
    """The depth of the latest iteration the engine finished."""
    nodes: int | None
    elapsed: float | None
    """Seconds searched."""
    lines: tuple[ResultLine, ...]
    """The best lines so far, best first."""


@errors.translated
async def watch(connections: Any, runs: Sequence[uuid.UUID], seconds: float) -> None:
    """Mark `runs` as watched for at least `seconds` more; a newly watched run's worker
    is told (`analysis_watch`), so it starts publishing at once."""
    if runs:
        await connections.execute(WATCH, list(runs), seconds)


@errors.translated
async def forget_unwatched(connections: Any, after_seconds: float) -> None:
    """Delete the rows nobody has watched for `after_seconds`."""
    await connections.execute(FORGET, after_seconds)


@errors.translated
async def read(connections: Any, runs: Sequence[uuid.UUID]) -> dict[uuid.UUID, Progress]:
    """The latest progress of each of `runs` that has any."""
    if not runs:
        return {}
    rows = await connections.fetch(READ, list(runs))
    return {row["run_id"]: _progress(row) for row in rows}


def _progress(row: asyncpg.Record) -> Progress:
    lines = row["lines"]
    if isinstance(lines, str):  # plain asyncpg hands jsonb over as text
        lines = json.loads(lines)
    return Progress(
        run=row["run_id"],
        depth=row["depth"],
        nodes=row["nodes"],
        elapsed=row["elapsed"],
        lines=tuple(ResultLine.from_json(line) for line in lines or ()),
    )


@errors.translated
async def publish(
    connections: Any,
    run: uuid.UUID,
    *,
    depth: int,
    nodes: int | None,
    elapsed: float | None,
    lines: Sequence[ResultLine],
) -> bool:
    """Publish a run's latest report; False when nobody watches it any more."""
    payload = json.dumps([line.to_json() for line in lines])
    watched = await connections.fetchval(PUBLISH, run, depth, nodes, elapsed, payload)
    return bool(watched)
