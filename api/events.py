"""The notification hub: one LISTEN connection per API process, fanned out to waiters.

Each `analysisCompleted` subscription registers a waiter for its id; an `analysis_done`
notification wakes the waiters of that id, handing them the row: the rows of every
notification that arrived together are read in one statement, so a worker finishing a
thousand analyses costs a few reads, not a thousand. Any number of subscribers cost one
database connection. After the connection comes back from an outage the hub re-reads
every id still awaited, since the notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

from sqlalchemy.ext.asyncio import AsyncEngine

from db import models, notifications, queue

log = logging.getLogger(__name__)


class Waiter:
    """One subscriber's wait for one analysis."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        """Set when the analysis may have finished."""
        self.row: models.Analysis | None = None
        """The row as the hub read it after the notification; None: read it yourself."""

    async def wait(self) -> models.Analysis | None:
        """Wait to be woken; the row the hub read for this wake-up, if any."""
        await self.woken.wait()
        self.woken.clear()
        row, self.row = self.row, None
        return row


class NotificationHub:
    """Fans `analysis_done` notifications out to in-process waiters keyed by id."""

    def __init__(self, dsn: str, database: AsyncEngine, *, ping_interval: float) -> None:
        self._database = database
        self._waiters: dict[uuid.UUID, set[Waiter]] = {}
        self._due: set[uuid.UUID] = set()
        self._reading: asyncio.Task[None] | None = None
        self._listener = notifications.Listener(
            dsn,
            [notifications.ANALYSIS_DONE],
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
                waiter.woken.set()

    @contextlib.contextmanager
    def waiter(self, analysis_id: uuid.UUID) -> Iterator[Waiter]:
        """A waiter woken whenever `analysis_id` may have finished; removed on exit.

        Register it *before* reading the row, so a completion cannot slip in between.
        """
        waiter = Waiter()
        self._waiters.setdefault(analysis_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(analysis_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[analysis_id]

    def _on_notification(self, _channel: str, payload: str) -> None:
        analysis_id = notifications.parse_id_payload(payload)
        if analysis_id is None:
            log.warning("dropping malformed %s payload %r", notifications.ANALYSIS_DONE, payload)
            return
        if analysis_id in self._waiters:
            self._wake_soon([analysis_id])

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
                rows = {row.id: row for row in await queue.get_many(self._database, ids)}
            except Exception:
                # The waiters read their rows themselves, riding out an outage.
                log.warning("reading %d finished analyses failed", len(ids), exc_info=True)
            for analysis_id in ids:
                for waiter in self._waiters.get(analysis_id, ()):
                    waiter.row = rows.get(analysis_id)
                    waiter.woken.set()

    async def _recheck(self) -> None:
        finished = await queue.terminal_among(self._database, list(self._waiters))
        if finished:
            self._wake_soon(list(finished))
