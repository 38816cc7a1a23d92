"""The notification hub: one LISTEN connection per API process, fanned out to waiters.

Each `analysisCompleted` subscription registers a waiter for its id; an `analysis_done`
notification wakes the waiters of that id. Hundreds of subscribers cost one database
connection. After the connection comes back from an outage the hub re-reads every id
still awaited, since the notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

from sqlalchemy.ext.asyncio import AsyncEngine

from db import notifications, queue

log = logging.getLogger(__name__)


class NotificationHub:
    """Fans `analysis_done` notifications out to in-process waiters keyed by id."""

    def __init__(self, dsn: str, database: AsyncEngine, *, ping_interval: float) -> None:
        self._database = database
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}
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
        return sum(len(events) for events in self._waiters.values())

    async def start(self) -> None:
        """Connect and LISTEN."""
        await self._listener.start()

    async def close(self) -> None:
        """Stop listening and wake every waiter so it can re-read its row."""
        await self._listener.close()
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def waiter(self, analysis_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever `analysis_id` may have finished; removed on exit.

        Register it *before* reading the row, so a completion cannot slip in between.
        """
        event = asyncio.Event()
        self._waiters.setdefault(analysis_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiters.get(analysis_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[analysis_id]

    def _wake(self, analysis_id: uuid.UUID) -> None:
        for event in self._waiters.get(analysis_id, ()):
            event.set()

    def _on_notification(self, _channel: str, payload: str) -> None:
        analysis_id = notifications.parse_id_payload(payload)
        if analysis_id is None:
            log.warning("dropping malformed %s payload %r", notifications.ANALYSIS_DONE, payload)
            return
        self._wake(analysis_id)

    async def _recheck(self) -> None:
        for analysis_id in await queue.terminal_among(self._database, list(self._waiters)):
            self._wake(analysis_id)
