"""The notification hub: one LISTEN connection per API process, fanned out to waiters.

Each `analysisCompleted` subscription registers a waiter for its id; an `analysis_done`
notification wakes the waiters of that id, handing them the row: the rows of every
notification that arrived together are read in one statement, so a worker finishing a
thousand analyses costs a few reads, not a thousand. Any number of subscribers cost one
database connection. After the connection comes back from an outage the hub re-reads
every id still awaited, since the notifications sent meanwhile are lost.

The same connection hears `analysis_progress`, which it hands to the progress board
(`api.progress_board`), and `game_progress`, which wakes the waiters of that game (they
read the game themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from db import models, notifications, submissions

log = logging.getLogger(__name__)


class Waiter:
    """One subscriber's wait for one analysis; registered with its hub while entered.

    Kept small: one lives as long as its subscription, and a process holds thousands
    (a future while waiting rather than an `asyncio.Event` and its deque; its own
    context manager rather than a generator's).
    """

    __slots__ = ("_future", "_id", "_registry", "_woken", "row")

    def __init__(self, registry: dict[uuid.UUID, list[Waiter]], analysis_id: uuid.UUID) -> None:
        self._registry = registry
        self._id = analysis_id
        self._woken = False
        self._future: asyncio.Future[None] | None = None
        self.row: models.Analysis | None = None
        """The row as the hub read it after the notification; None: read it yourself."""

    def wake(self, row: models.Analysis | None = None) -> None:
        """The analysis may have finished; `row` is the hub's read of it, if any."""
        self.row = row
        self._woken = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def __enter__(self) -> Waiter:
        # A list, not a set: an id has one waiter or a few, and a process thousands.
        self._registry.setdefault(self._id, []).append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        waiters = self._registry.get(self._id)
        if waiters is not None:
            with contextlib.suppress(ValueError):
                waiters.remove(self)
            if not waiters:
                del self._registry[self._id]

    async def wait(self) -> models.Analysis | None:
        """Wait to be woken; the row the hub read for this wake-up, if any."""
        if not self._woken:
            self._future = asyncio.get_running_loop().create_future()
            try:
                await self._future
            finally:
                self._future = None
        self._woken = False
        row, self.row = self.row, None
        return row


class NotificationHub:
    """Fans `analysis_done` notifications out to in-process waiters keyed by id."""

    def __init__(self, dsn: str, database: AsyncEngine, *, ping_interval: float) -> None:
        self._database = database
        self._waiters: dict[uuid.UUID, list[Waiter]] = {}
        self._due: set[uuid.UUID] = set()
        self._reading: asyncio.Task[None] | None = None
        self.on_progress: Callable[[uuid.UUID], None] | None = None
        """Called with the run's id for each `analysis_progress` notification."""
        self._listener = notifications.Listener(
            dsn,
            [
                notifications.ANALYSIS_DONE,
                notifications.ANALYSIS_PROGRESS,
                notifications.GAME_PROGRESS,
            ],
            self._on_notification,
            on_reconnect=self._recheck,
            ping_interval=ping_interval,
            application_name="chess-analysis-api-listener",
        )

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up."""
        return self._listener.connected

    @property
    def watching(self) -> asyncio.Task[None]:
        """The task that keeps the LISTEN connection up; it ends only if it cannot."""
        return self._listener.watching

    @property
    def failed(self) -> bool:
        """True once the LISTEN connection could not be kept up (the process must go)."""
        return self._listener.watching.done()

    @property
    def waiting(self) -> int:
        """How many waiters are registered (for tests and metrics)."""
        return sum(len(waiters) for waiters in self._waiters.values())

    async def start(self) -> None:
        """Connect and LISTEN."""
        await self._listener.start()

    async def close(self) -> None:
        """Stop listening and wake every waiter so it can re-read its row."""
        await self._listener.close()
        if self._reading is not None:
            self._reading.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()

    def waiter(self, analysis_id: uuid.UUID) -> Waiter:
        """A waiter woken whenever `analysis_id` may have finished, while entered.

        Enter it *before* reading the row, so a completion cannot slip in between.
        """
        return Waiter(self._waiters, analysis_id)

    def look_up(self, analysis_id: uuid.UUID) -> None:
        """Read the row of an entered waiter's analysis soon and wake the waiter with it,
        finished or not: new subscriptions arriving together share one statement."""
        self._wake_soon([analysis_id])

    def _on_notification(self, channel: str, payload: str) -> None:
        if channel == notifications.ANALYSIS_DONE:
            self._on_done(payload)
            return
        analysis_id = notifications.parse_id_payload(payload)
        if analysis_id is None:
            log.warning("dropping malformed %s payload %r", channel, payload)
            return
        if channel == notifications.ANALYSIS_PROGRESS:
            if self.on_progress is not None:
                self.on_progress(analysis_id)
            return
        if channel == notifications.GAME_PROGRESS:
            # a game's waiters read the game themselves: wake them, no row
            for waiter in self._waiters.get(analysis_id, ()):
                waiter.wake()

    def _on_done(self, payload: str) -> None:
        ended = notifications.parse_ids_payload(payload)
        if ended is None:
            log.warning("dropping malformed %s payload %r", notifications.ANALYSIS_DONE, payload)
            return
        if awaited := [analysis_id for analysis_id in ended if analysis_id in self._waiters]:
            self._wake_soon(awaited)

    def _wake_soon(self, ids: list[uuid.UUID]) -> None:
        self._due.update(ids)
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read_and_wake())

    async def _read_and_wake(self) -> None:
        while self._due:
            await asyncio.sleep(0)  # let the notifications that came together gather
            ids, self._due = [i for i in self._due if i in self._waiters], set()
            rows: dict[uuid.UUID, models.Analysis] = {}
            try:
                rows = {row.id: row for row in await submissions.get_many(self._database, ids)}
            except Exception:
                # The waiters read their rows themselves, riding out an outage.
                log.warning("reading %d finished analyses failed", len(ids), exc_info=True)
            for analysis_id in ids:
                for waiter in self._waiters.get(analysis_id, ()):
                    waiter.wake(rows.get(analysis_id))

    async def _recheck(self) -> None:
        finished = await notifications.terminal_among(self._database, list(self._waiters))
        if finished:
            self._wake_soon(list(finished))
