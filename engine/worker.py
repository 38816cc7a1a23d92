"""A worker process: its identity, its slots, and the duties they share.

- **Heartbeat**: every quarter lease, renew the leases of the rows the slots run, whose
  results wait to be written, or that were claimed ahead; a row no longer held (taken
  back) or asked to be canceled interrupts its slot (or leaves the hand).
- **Sweep**: every `sweep_interval` (with jitter), take back rows whose lease expired,
  whoever held them: re-queued with backoff, or failed once their attempts are used up.
- **Notifications**: `analysis_queued` wakes idle slots; `analysis_cancel` interrupts
  the slot running that row.
- **Shutdown**: on stop, no more claims; running analyses get `grace_seconds` to finish,
  then are interrupted and their rows put straight back in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db import notifications, queue, workers
from db.errors import DatabaseUnavailableError
from engine.batching import Exchange
from engine.metrics import WorkerMetrics
from engine.pool import start_engines
from engine.settings import EngineSettings
from engine.slot import Interrupt, Slot, SlotContext, first_of

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 15.0
"""After the grace period, how long interrupted slots may take to put rows back."""


class Worker:
    """One worker process."""

    def __init__(
        self,
        settings: EngineSettings,
        database: AsyncEngine,
        pool: asyncpg.Pool,
        dsn: str,
        stockfish: Path,
    ) -> None:
        self.settings = settings
        self.database = database
        self.pool = pool
        """Claims and finishes go through this pool: the hot path, off the ORM."""
        self.dsn = dsn
        self.stockfish = stockfish
        self.id = str(uuid.uuid4())
        """Fresh for every process: part of the claim token that fences its writes."""
        self.ready = asyncio.Event()
        """Set once every engine runs and the worker listens for new work."""
        self.slots: list[Slot] = []
        self.backoff = queue.Backoff(settings.retry_base_delay, settings.retry_max_delay)
        self.metrics = WorkerMetrics()
        self._cancels: set[asyncio.Task[None]] = set()
        self.exchange = Exchange(
            pool,
            database,
            self.id,
            settings.lease_seconds,
            ahead=settings.slots,
            ahead_below=settings.claim_ahead_below,
        )
        """Claims rows and writes results, several per statement, for all the slots."""

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down gracefully."""
        engines = await start_engines(
            self.stockfish,
            self.settings.slots,
            hash_mb=self.settings.hash_mb,
            start_timeout=self.settings.start_timeout,
        )
        context = SlotContext(
            settings=self.settings,
            database=self.database,
            worker_id=self.id,
            backoff=self.backoff,
            metrics=self.metrics,
            exchange=self.exchange,
        )
        self.slots = [Slot(context, engine, number) for number, engine in enumerate(engines)]
        listener = notifications.Listener(
            self.dsn,
            [notifications.ANALYSIS_QUEUED, notifications.ANALYSIS_CANCEL],
            self._on_notification,
            on_reconnect=self._after_reconnect,
            application_name="chess-analysis-worker",
        )
        self._listener = listener
        self._info = workers.WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=len(engines),
            engine=engines[0].name,
        )
        try:
            await listener.start()
            await self._announce()
            log.info("worker %s ready: %d slots of %s", self.id, len(engines), engines[0].name)
            self.ready.set()
            await self._serve(stop)
        finally:
            with contextlib.suppress(DatabaseUnavailableError):
                await workers.remove(self.database, self.id)
            await listener.close()
            await asyncio.gather(*(engine.close() for engine in engines), return_exceptions=True)
            log.info("worker %s stopped", self.id)

    async def _serve(self, stop: asyncio.Event) -> None:
        slots = [
            asyncio.create_task(slot.run(stop), name=f"slot-{slot.number}") for slot in self.slots
        ]
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        sweep = asyncio.create_task(self._sweep(stop), name="sweep")
        try:
            await stop.wait()
            self.exchange.stop_claiming_ahead()
            busy = sum(slot.job is not None for slot in self.slots)
            log.info(
                "stopping: no more claims; %d analyses get %.0f s",
                busy,
                self.settings.grace_seconds,
            )
            _, pending = await asyncio.wait(slots, timeout=self.settings.grace_seconds)
            if pending:
                for slot in self.slots:
                    slot.interrupt(Interrupt.SHUTDOWN)
                await asyncio.wait(pending, timeout=SHUTDOWN_SECONDS)
            # Results handed to the writer are written before the leases stop; rows
            # claimed ahead go back to the queue.
            await self.exchange.drain(self.settings.lease_seconds)
            await self.exchange.give_back_ahead()
        finally:
            for task in [*slots, heartbeat, sweep]:
                task.cancel()
            await asyncio.gather(*slots, heartbeat, sweep, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until every slot waits for work (for tests and tools)."""
        await asyncio.gather(*(slot.idle.wait() for slot in self.slots))

    def _on_notification(self, channel: str, payload: str) -> None:
        if channel == notifications.ANALYSIS_QUEUED:
            for slot in self.slots:
                slot.wake()
            return
        analysis_id = notifications.parse_id_payload(payload)
        if analysis_id is None:
            log.warning("dropping malformed %s payload %r", channel, payload)
            return
        for slot in self.slots:
            slot.interrupt(Interrupt.CANCELED, analysis_id)
        self._cancel_ahead(analysis_id)

    def _cancel_ahead(self, analysis_id: uuid.UUID) -> None:
        """A row claimed ahead that a client canceled: out of the hand, marked canceled."""
        job = self.exchange.take_back(analysis_id)
        if job is None:
            return
        task = asyncio.create_task(self._mark_canceled(job))
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def _mark_canceled(self, job: queue.ClaimedJob) -> None:
        try:
            if await queue.mark_canceled(self.database, job, self.id):
                self.metrics.canceled.inc()
        except DatabaseUnavailableError as exc:
            # The lease runs out and the sweep finishes the cancellation.
            log.warning("cannot mark %s canceled: %s", job.id, exc)

    async def _after_reconnect(self) -> None:
        # Notifications sent while the connection was down are lost: look at the queue,
        # and let the next heartbeat find cancellations.
        for slot in self.slots:
            slot.wake()

    async def _announce(self) -> None:
        """Write this worker's heartbeat row: alive, and whether it hears notifications."""
        await workers.register(
            self.database,
            self._info,
            listening=self._listener.connected,
            ttl=self.settings.lease_seconds,
        )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            with contextlib.suppress(DatabaseUnavailableError):
                await self._announce()
                self.metrics.queue_depth.set(await queue.count_queued(self.database))
            running = {slot.job.id: slot for slot in self.slots if slot.job is not None}
            unwritten = self.exchange.unwritten - running.keys()
            ahead = self.exchange.claimed_ahead
            try:
                leases = await queue.renew_leases(
                    self.database,
                    self.id,
                    [*running, *unwritten, *ahead],
                    self.settings.lease_seconds,
                )
            except DatabaseUnavailableError as exc:
                log.warning("cannot renew leases: %s", exc)
                continue
            held = {lease.id: lease for lease in leases}
            for job_id, slot in running.items():
                lease = held.get(job_id)
                if lease is None:
                    slot.interrupt(Interrupt.LOST, job_id)
                elif lease.cancel_requested:
                    slot.interrupt(Interrupt.CANCELED, job_id)
            for job_id in ahead:
                lease = held.get(job_id)
                if lease is None:
                    self.exchange.take_back(job_id)  # taken back: no longer ours to run
                elif lease.cancel_requested:
                    self._cancel_ahead(job_id)

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            interval = self.settings.sweep_interval
            await first_of(stop, timeout=interval * random.uniform(0.5, 1.5))
            if stop.is_set():
                return
            with contextlib.suppress(DatabaseUnavailableError):
                taken = await queue.requeue_expired(self.database, self.backoff)
                for analysis_id, status in taken.items():
                    log.warning("took back %s (lease expired): now %s", analysis_id, status.value)
                for worker_id in await workers.remove_expired(self.database):
                    log.warning("worker %s stopped sending heartbeats; row removed", worker_id)
