"""The claim → analyse → finish loop, one per slot, and the process that runs the slots.

Each slot owns one Stockfish. It claims rows until the queue is empty, then waits for
an `analysis_queued` notification, the poll interval or the stop signal, whichever
comes first. NOTIFY only wakes a slot; the claim statement decides who gets a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from pathlib import Path

import chess.engine
from sqlalchemy.ext.asyncio import AsyncEngine

from db import notifications, queue
from db.errors import DatabaseUnavailableError
from engine import analysis
from engine.pool import Stockfish, start_engines
from engine.settings import EngineSettings

log = logging.getLogger(__name__)

UNAVAILABLE_BACKOFF_SECONDS = 1.0


class Worker:
    """One worker process: its identity, its engines and its slots."""

    def __init__(
        self, settings: EngineSettings, database: AsyncEngine, dsn: str, stockfish: Path
    ) -> None:
        self.settings = settings
        self.database = database
        self.dsn = dsn
        self.stockfish = stockfish
        self.id = str(uuid.uuid4())
        """Fresh for every process: the fence that keeps a replaced worker's writes out."""
        self.ready = asyncio.Event()
        """Set once every engine runs and the worker listens for new work."""
        self._wakers: list[asyncio.Event] = []
        self._idle = 0
        self._idle_changed = asyncio.Condition()

    async def run(self, stop: asyncio.Event) -> None:
        """Run every slot until `stop` is set; running analyses are finished first."""
        engines = await start_engines(
            self.stockfish,
            self.settings.slots,
            hash_mb=self.settings.hash_mb,
            start_timeout=self.settings.start_timeout,
        )
        self._wakers = [asyncio.Event() for _ in engines]
        listener = notifications.Listener(
            self.dsn,
            [notifications.ANALYSIS_QUEUED],
            self._wake_all,
            on_reconnect=self._wake_all_after_reconnect,
            application_name="chess-analysis-worker",
        )
        try:
            await listener.start()
            log.info("worker %s ready: %d slots of %s", self.id, len(engines), engines[0].name)
            self.ready.set()
            async with asyncio.TaskGroup() as slots:
                for number, (engine, waker) in enumerate(zip(engines, self._wakers, strict=True)):
                    slots.create_task(self._slot(engine, waker, stop), name=f"slot-{number}")
        finally:
            await listener.close()
            await asyncio.gather(*(engine.close() for engine in engines), return_exceptions=True)
            log.info("worker %s stopped", self.id)

    async def wait_idle(self) -> None:
        """Wait until every slot waits for work (for tests and tools)."""
        async with self._idle_changed:
            await self._idle_changed.wait_for(lambda: self._idle == len(self._wakers) > 0)

    def _wake_all(self, _channel: str = "", _payload: str = "") -> None:
        for waker in self._wakers:
            waker.set()

    async def _wake_all_after_reconnect(self) -> None:
        # Notifications sent while the connection was down are lost: look at the queue.
        self._wake_all()

    async def _slot(self, engine: Stockfish, waker: asyncio.Event, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before the claim, so a notification that arrives between an empty
            # claim and the wait below is not lost.
            waker.clear()
            try:
                job = await queue.claim_next(self.database, self.id, self.settings.lease_seconds)
            except DatabaseUnavailableError as exc:
                log.warning("cannot claim: %s", exc)
                await _first_of(stop, timeout=UNAVAILABLE_BACKOFF_SECONDS)
                continue
            if job is None:
                await self._wait_for_work(waker, stop)
                continue
            await self._process(engine, job)

    async def _wait_for_work(self, waker: asyncio.Event, stop: asyncio.Event) -> None:
        await self._set_idle(+1)
        try:
            await _first_of(waker, stop, timeout=self.settings.poll_interval)
        finally:
            await self._set_idle(-1)

    async def _set_idle(self, change: int) -> None:
        async with self._idle_changed:
            self._idle += change
            self._idle_changed.notify_all()

    async def _process(self, engine: Stockfish, job: queue.ClaimedJob) -> None:
        timeout = job.time_limit + self.settings.timeout_margin
        log.info("analysing %s (attempt %d)", job.id, job.attempts)
        try:
            lines = await analysis.analyse(engine.protocol, job, timeout)
        except (chess.engine.EngineTerminatedError, TimeoutError) as exc:
            reason = "engine timed out" if isinstance(exc, TimeoutError) else "engine died"
            log.warning("analysis %s: %s; replacing the engine", job.id, reason)
            await self._write(queue.fail(self.database, job.id, self.id, reason, engine.name))
            await engine.restart()
            return
        except chess.engine.EngineError as exc:
            log.warning("analysis %s failed: %s", job.id, exc)
            await self._write(
                queue.fail(self.database, job.id, self.id, f"engine error: {exc}", engine.name)
            )
            return
        await self._write(queue.finish(self.database, job.id, self.id, lines, engine.name))
        log.info("analysis %s done", job.id)

    async def _write(self, statement: Awaitable[bool]) -> None:
        try:
            written = await statement
        except DatabaseUnavailableError as exc:
            # The lease runs out and the row goes back to the queue.
            log.warning("cannot record the outcome: %s", exc)
            return
        if not written:
            log.warning("the row was no longer this worker's; outcome dropped")


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of `events` is set or `timeout` seconds have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)
