"""A worker process: its identity, its slots, and the duties they share.

- **Heartbeat**: every quarter lease, renew the leases of the rows the slots run, whose
  results wait to be written, or that were claimed ahead; a row no longer held (taken
  back) or asked to be canceled interrupts its slot (or leaves the hand); a run someone
  watches has its slot publish its progress (a watch whose notification was missed, or
  that came while the row waited in the hand, starts here).
- **Sweep**: every `sweep_interval` (with jitter), take back rows whose lease expired,
  whoever held them: re-queued with backoff, or failed once their attempts are used up;
  then delete what retention says is old. After an outage it waits a lease before
  sweeping, so that live workers renew the leases that lapsed while the database was
  away (`db.sweep` gives the same grace after a server restart).
- **Supervision**: the heartbeat, the sweep and the notification listener outlive any
  error they meet (`runtime.supervision`); one that keeps failing with bugs stops the
  worker with an error, for its own supervisor to start a fresh one.
- **Notifications**: `analysis_queued` wakes idle slots; `analysis_cancel` interrupts
  the slot running that row; `analysis_watch` has the slot running that run publish
  its progress (`engine.progress`).
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
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db import claims, errors, notifications, retention, sweep, workers
from db.errors import TransientDatabaseError
from engine.batching import Exchange
from engine.metrics import WorkerMetrics
from engine.pool import start_engines
from engine.settings import EngineSettings
from engine.slot import Interrupt, Slot, SlotContext, count_outcome, first_of
from runtime.supervision import SupervisionError, supervise

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 15.0
"""After the grace period, how long interrupted slots may take to put rows back."""
RETENTION_BATCHES = 4
"""Retention batches per sweep at most, so one sweep never runs long."""


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
        """Claims, outcomes, leases and the sweep go through this pool: off the ORM."""
        self.dsn = dsn
        self.stockfish = stockfish
        self.id = str(uuid.uuid4())
        """Fresh for every process: part of the claim token that fences its writes."""
        self.ready = asyncio.Event()
        """Set once every engine runs and the worker listens for new work."""
        self.slots: list[Slot] = []
        self.backoff = claims.Backoff(settings.retry_base_delay, settings.retry_max_delay)
        self.metrics = WorkerMetrics()
        self._cancels: set[asyncio.Task[None]] = set()
        self.exchange = Exchange(
            pool,
            self.id,
            settings.lease_seconds,
            self.backoff,
            ahead=settings.slots,
            ahead_below=settings.claim_ahead_below,
        )
        """Claims rows and writes every outcome, several per statement, for all the slots."""

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
            pool=self.pool,
            worker_id=self.id,
            metrics=self.metrics,
            exchange=self.exchange,
        )
        self.slots = [Slot(context, engine, number) for number, engine in enumerate(engines)]
        listener = notifications.Listener(
            self.dsn,
            [
                notifications.ANALYSIS_QUEUED,
                notifications.ANALYSIS_CANCEL,
                notifications.ANALYSIS_WATCH,
            ],
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
            with contextlib.suppress(TransientDatabaseError):
                await workers.remove(self.database, self.id)
            await listener.close()
            await asyncio.gather(*(engine.close() for engine in engines), return_exceptions=True)
            log.info("worker %s stopped", self.id)

    async def _serve(self, stop: asyncio.Event) -> None:
        slots = [
            asyncio.create_task(slot.run(stop), name=f"slot-{slot.number}") for slot in self.slots
        ]
        duties = [
            self._supervised("heartbeat", self._heartbeat),
            self._supervised("sweep", lambda: self._sweep(stop)),
        ]
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                [stopping, *duties, self._listener.watching],
                return_when=asyncio.FIRST_COMPLETED,
            )
            failed = [task for task in [*duties, self._listener.watching] if task.done()]
            self.exchange.stop_claiming_ahead()
            # A duty failed (the heartbeat, perhaps: then no lease is kept): running
            # analyses go back to the queue at once.
            grace = 0.0 if failed else self.settings.grace_seconds
            busy = sum(slot.job is not None for slot in self.slots)
            log.info("stopping: no more claims; %d analyses get %.0f s", busy, grace)
            stop.set()
            _, pending = await asyncio.wait(slots, timeout=grace)
            if pending:
                for slot in self.slots:
                    slot.interrupt(Interrupt.SHUTDOWN)
                await asyncio.wait(pending, timeout=SHUTDOWN_SECONDS)
            # Results handed to the writer are written before the leases stop; rows
            # claimed ahead go back to the queue.
            await self.exchange.drain(self.settings.lease_seconds)
            await self.exchange.give_back_ahead()
        finally:
            for task in [*slots, *duties, stopping]:
                task.cancel()
            await asyncio.gather(*slots, *duties, stopping, return_exceptions=True)
            await self.exchange.close()
        for task in failed:
            if not task.cancelled() and task.exception() is not None:
                raise SupervisionError(f"{task.get_name()} could not be kept running")

    def _supervised(self, name: str, duty: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(
            supervise(
                name,
                duty,
                transient=errors.is_transient,
                most_delay=self.settings.heartbeat_interval,
            ),
            name=name,
        )

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
        if channel == notifications.ANALYSIS_WATCH:
            for slot in self.slots:
                slot.watch(analysis_id)
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

    async def _mark_canceled(self, job: claims.ClaimedJob) -> None:
        outcome = claims.Outcome.of(job, self.id, claims.Ending.CANCELED)
        count_outcome(self.metrics, await self.exchange.end(outcome))

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
        # Beat first: a heartbeat started again after an error renews at once.
        while True:
            try:
                await self._beat()
            except TransientDatabaseError as exc:
                log.warning("heartbeat: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _beat(self) -> None:
        """Renew the leases of every row this worker holds; stop the slots of rows taken
        back or asked to be canceled, and have those of runs someone watches publish
        their progress. Then say the worker is alive."""
        running = {slot.job.id: slot for slot in self.slots if slot.job is not None}
        unwritten = self.exchange.unwritten - running.keys()
        ahead = self.exchange.claimed_ahead
        leases = await claims.renew_leases(
            self.pool, self.id, [*running, *unwritten, *ahead], self.settings.lease_seconds
        )
        held = {lease.id: lease for lease in leases}
        for job_id, slot in running.items():
            lease = held.get(job_id)
            if lease is None:
                slot.interrupt(Interrupt.LOST, job_id)
            elif lease.cancel_requested:
                slot.interrupt(Interrupt.CANCELED, job_id)
            elif lease.watched:
                slot.watch(job_id)
        for job_id in ahead:
            lease = held.get(job_id)
            if lease is None:
                self.exchange.take_back(job_id)  # taken back: no longer ours to run
            elif lease.cancel_requested:
                self._cancel_ahead(job_id)
        await self._announce()
        self.metrics.queue_depth.set(await claims.count_queued(self.pool))

    async def _sweep(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        # After a failure, leases that lapsed while the database was away may belong to
        # live workers that have not renewed them yet: sweep again only once it has
        # taken writes for a whole lease (their heartbeats renew every quarter lease).
        grace = self.settings.lease_seconds
        writable_since: float | None = loop.time() - grace  # a new worker sweeps at once
        while not stop.is_set():
            interval = self.settings.sweep_interval
            await first_of(stop, timeout=interval * random.uniform(0.5, 1.5))
            if stop.is_set():
                return
            try:
                if writable_since is None:
                    if await sweep.writable(self.pool):
                        writable_since = loop.time()
                    continue
                if loop.time() - writable_since < grace:
                    continue
                await self._sweep_once(grace)
            except TransientDatabaseError as exc:
                if writable_since is not None:
                    log.warning("sweep: %s; sweeping again a lease after it is back", exc)
                writable_since = None

    async def _sweep_once(self, grace: float) -> None:
        taken = await sweep.requeue_expired(self.pool, self.backoff, grace_seconds=grace)
        for analysis_id, status in taken.items():
            log.warning("took back %s (lease expired): now %s", analysis_id, status.value)
        for worker_id in await workers.remove_expired(self.database):
            log.warning("worker %s stopped sending heartbeats; row removed", worker_id)
        swept = await retention.sweep(
            self.database,
            self.settings.retention_days,
            self.settings.persisted_query_days,
            self.settings.retention_batch,
            max_batches=RETENTION_BATCHES,
        )
        if swept.analyses or swept.persisted_queries:
            log.info(
                "retention: deleted %d analyses and %d persisted queries",
                swept.analyses,
                swept.persisted_queries,
            )
