"""The subscriptions: an analysis's end, and its search as it deepens."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine

from api import validation
from api.context import ResolverInfo
from api.errors import NotFoundError
from api.events import Waiter
from api.types import Analysis, AnalysisProgress, AnalysisStatus, Line
from db import models, submissions, tenants
from db.errors import TransientDatabaseError
from db.progress import Progress
from db.tenants import Tenant

OUTAGE_RETRY_MIN_SECONDS = 0.2
OUTAGE_RETRY_MAX_SECONDS = 5.0

T = TypeVar("T")


async def analysis_completed(
    info: ResolverInfo,
    id: strawberry.ID,
) -> AsyncGenerator[Analysis, None]:
    """Emit the analysis once it is DONE, FAILED or CANCELED (at once if it already is).

    Another tenant's analysis is NOT_FOUND at once, as an unknown id is: the hub reads
    rows for every subscriber, so each row it hands over is checked here."""
    analysis_id = validation.parse_id(id)
    database = info.context.database
    viewer = info.context.tenant
    hub = info.context.hub
    with hub.waiter(analysis_id) as waiter:
        # Registered before the first read: a completion cannot slip in between. The
        # hub reads the row (with those of other new subscriptions) and wakes us.
        hub.look_up(analysis_id)
        row = await read_after_wake(waiter, database, analysis_id, viewer)
        while row is not None and not row.status.is_terminal:
            row = None  # not held through a wait that may last minutes
            # The hub hands over the row it read for the notification, if it could.
            row = await read_after_wake(waiter, database, analysis_id, viewer)
    if row is None:
        raise NotFoundError(f"no analysis with id {analysis_id}")
    yield Analysis.from_model(row)


async def read_after_wake(
    waiter: Waiter, database: AsyncEngine, analysis_id: uuid.UUID, viewer: Tenant
) -> models.Analysis | None:
    """Wait to be woken; the row then, if `viewer` may see it: the hub's read, else one
    of our own (when the hub could not read it, found none, or found one the viewer may
    not see: the same read either way, so that another tenant's id takes as long to
    refuse as an unknown one)."""
    row = await waiter.wait()
    if row is not None and visible(row, viewer):
        return row
    return await read_through_outage(database, analysis_id, viewer)


def visible(row: models.Analysis, viewer: Tenant) -> bool:
    """Whether `viewer` may see `row`: an admin sees every row; anyone else their own
    and the anonymous tenant's (reachable by id, never listed). `db.submissions.get`
    reads by the same rule."""
    return viewer.is_admin or row.tenant_id in (viewer.id, tenants.ANONYMOUS_ID)


async def through_outage(read: Callable[[], Awaitable[T]]) -> T:
    """`read()`, tried again until the database answers: a subscription is a long wait
    anyway, so it rides an outage out instead of failing (the hub re-reads every awaited
    id once its connection is back, and wakes the waiters of those that finished)."""
    delay = OUTAGE_RETRY_MIN_SECONDS
    while True:
        try:
            return await read()
        except TransientDatabaseError:
            await asyncio.sleep(delay)
            delay = min(delay * 2, OUTAGE_RETRY_MAX_SECONDS)


async def read_through_outage(
    database: AsyncEngine, analysis_id: uuid.UUID, viewer: Tenant
) -> models.Analysis | None:
    """Read a row, waiting out a database outage (`through_outage`)."""
    return await through_outage(lambda: submissions.get(database, analysis_id, viewer=viewer))


async def analysis_progress(
    info: ResolverInfo,
    id: strawberry.ID,
) -> AsyncGenerator[AnalysisProgress, None]:
    """Emit the analysis's search as it deepens (at most a few times a second, as its
    worker publishes), then once more with the finished analysis, then complete.

    A subscription that arrives while the search runs gets its latest state at once;
    one that arrives after the end gets the finished analysis alone. Followers of one
    shared run all see that run's search."""
    analysis_id = validation.parse_id(id)
    database = info.context.database
    viewer = info.context.tenant
    hub = info.context.hub
    with hub.waiter(analysis_id) as waiter:
        hub.look_up(analysis_id)
        row = await read_after_wake(waiter, database, analysis_id, viewer)
        if row is None:
            raise NotFoundError(f"no analysis with id {analysis_id}")
        latest: Progress | None = None
        with info.context.progress.follower(row.run) as follower:
            ended = asyncio.ensure_future(waiter.wait())
            reported = asyncio.ensure_future(follower.wait())
            try:
                while not row.status.is_terminal:
                    await asyncio.wait({ended, reported}, return_when=asyncio.FIRST_COMPLETED)
                    if ended.done():
                        read = ended.result()
                        if read is None or not visible(read, viewer):
                            read = await read_through_outage(database, analysis_id, viewer)
                        row = read or row
                        if not row.status.is_terminal:
                            ended = asyncio.ensure_future(waiter.wait())
                    elif reported.done():
                        latest = reported.result()
                        reported = asyncio.ensure_future(follower.wait())
                        if row.status is models.AnalysisStatus.QUEUED:
                            hub.look_up(analysis_id)  # started: read its start time
                        yield progress_event(row, latest)
            finally:
                for task in (ended, reported):
                    task.cancel()
    yield final_event(row, latest)


def progress_event(row: models.Analysis, latest: Progress) -> AnalysisProgress:
    """What a follower is told of a report of the search."""
    analysis = Analysis.from_model(row)
    if analysis.status is AnalysisStatus.QUEUED:  # the report says it runs
        analysis = dataclasses.replace(analysis, status=AnalysisStatus.RUNNING)
    return AnalysisProgress(
        analysis=analysis,
        depth=latest.depth,
        lines=[Line.from_model(line) for line in latest.lines],
        nodes=latest.nodes,
        elapsed=latest.elapsed,
    )


def final_event(row: models.Analysis, latest: Progress | None) -> AnalysisProgress:
    """The last event: the finished analysis, its lines, how far its search went."""
    lines = row.result_lines() or []
    depth = min((line.depth for line in lines), default=None)
    return AnalysisProgress(
        analysis=Analysis.from_model(row),
        depth=depth if latest is None or depth is not None else latest.depth,
        lines=[Line.from_model(line) for line in lines],
        nodes=None if latest is None else latest.nodes,
        elapsed=None if latest is None else latest.elapsed,
    )
