"""The channels the triggers notify on, and what their payloads mean.

NOTIFY only wakes: the table is the truth. A listener that misses a notification
(because its connection dropped) re-reads the rows it cares about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors
from db.settings import asyncpg_dsn
from runtime.supervision import supervise

log = logging.getLogger(__name__)

ANALYSIS_QUEUED = "analysis_queued"
"""A row entered the queue (payload empty): idle workers should claim."""
ANALYSIS_DONE = "analysis_done"
"""Rows reached done, failed or canceled (payload: their ids, comma-separated: all that
one statement ended, up to 200 a notification; `parse_ids_payload`): subscribers should
read them."""
ANALYSIS_CANCEL = "analysis_cancel"
"""A client asked to cancel a running run (payload: the run's id): its worker should stop it."""
ANALYSIS_WATCH = "analysis_watch"
"""Someone began to watch a run's search (payload: the run's id): its worker should
publish its progress (`db.progress`)."""
GAME_PROGRESS = "game_progress"
"""A position of a game reached done, failed or canceled (payload: the game's id)."""
ANALYSIS_PROGRESS = "analysis_progress"
"""A run's progress was published (payload: the run's id): its listeners should read it."""


def parse_id_payload(payload: str) -> uuid.UUID | None:
    """The id an `analysis_done`, `analysis_cancel`, `analysis_watch` or `analysis_progress`
    notification carries, if well-formed."""
    try:
        return uuid.UUID(payload)
    except ValueError:
        return None


def parse_ids_payload(payload: str) -> list[uuid.UUID] | None:
    """The ids an `analysis_done` notification carries, if well-formed."""
    try:
        return [uuid.UUID(part) for part in payload.split(",")]
    except ValueError:
        return None


TERMINAL_AMONG = text(
    """
    SELECT id FROM analyses
     WHERE id = ANY(:ids) AND status IN ('done', 'failed', 'canceled')
    """
)


@errors.translated
async def terminal_among(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` are done, failed or canceled: what a listener re-reads after its
    connection came back (the notifications sent meanwhile are lost)."""
    if not ids:
        return set()
    async with engine.connect() as connection:
        rows = await connection.execute(TERMINAL_AMONG, {"ids": list(ids)})
        return {row.id for row in rows}


Handler = Callable[[str, str], None]
"""Called with (channel, payload) for every notification, in the event loop."""


class Listener:
    """One dedicated connection that LISTENs on some channels, outside any pool.

    It keeps itself up: a ping every `ping_interval` seconds and the driver's termination
    callback detect a dead link; it then reconnects with capped exponential backoff,
    LISTENs again and calls `on_reconnect`, because notifications sent while it was
    away are lost for good. The watch is supervised: an unexpected error is logged and
    the watch starts again.
    """

    def __init__(
        self,
        dsn: str,
        channels: Sequence[str],
        handler: Handler,
        *,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        ping_interval: float = 5.0,
        connect_timeout: float = 5.0,
        application_name: str = "chess-analysis-listener",
    ) -> None:
        self._dsn = asyncpg_dsn(dsn)
        self._channels = tuple(channels)
        self._handler = handler
        self._on_reconnect = on_reconnect
        self._ping_interval = ping_interval
        self._connect_timeout = connect_timeout
        self._application_name = application_name
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is up."""
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        """Connect and LISTEN (raising if the database cannot be reached), then keep watch."""
        await self._connect()
        self._task = asyncio.create_task(
            supervise("notification listener", self._watch, transient=errors.is_transient),
            name="notification listener",
        )

    @property
    def watching(self) -> asyncio.Task[None]:
        """The task that keeps the connection up; it ends only if it cannot be kept up."""
        if self._task is None:
            raise RuntimeError("the listener has not been started")
        return self._task

    async def close(self) -> None:
        """Stop watching and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._disconnect()

    async def _connect(self) -> None:
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={"application_name": self._application_name},
        )
        try:
            for channel in self._channels:
                await connection.add_listener(channel, self._dispatch)
        except BaseException:
            await connection.close(timeout=self._connect_timeout)
            raise
        self._lost.clear()
        connection.add_termination_listener(self._terminated)
        self._connection = connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.remove_termination_listener(self._terminated)
            with contextlib.suppress(Exception):
                await connection.close(timeout=self._connect_timeout)

    def _dispatch(self, _connection: object, _pid: int, channel: str, payload: object) -> None:
        try:
            self._handler(channel, str(payload))
        except Exception:
            log.exception("notification handler failed on %s", channel)

    def _terminated(self, _connection: object) -> None:
        self._lost.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._ping_interval)
            if not self._lost.is_set() and await self._ping():
                continue
            log.warning("notification connection lost; reconnecting")
            await self._disconnect()
            await self._reconnect()

    async def _ping(self) -> bool:
        connection = self._connection
        if connection is None or connection.is_closed():
            return False
        try:
            await connection.fetchval("SELECT 1", timeout=self._connect_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    async def _reconnect(self) -> None:
        delay = RECONNECT_MIN_DELAY
        while True:
            try:
                await self._connect()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("notification connection failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            log.info("notification connection restored")
            if self._on_reconnect is not None:
                try:
                    await self._on_reconnect()
                except Exception:
                    log.exception("re-reading after reconnect failed")
            return


RECONNECT_MIN_DELAY = 0.2
RECONNECT_MAX_DELAY = 5.0
