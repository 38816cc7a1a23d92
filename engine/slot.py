"""One slot of a worker: one Stockfish, and the claim → analyse → end loop around it.

A slot claims rows until the queue has none due, then waits for a wake-up (an
`analysis_queued` notification), the time the next retry falls due, the poll interval,
or the stop signal. While it analyses, the worker may interrupt it: the client canceled
the row, the row was taken back from this worker, or the worker is shutting down; or
tell it that someone watches the run, whose progress the slot then publishes
(`engine.progress`).

Every job the slot takes ends with a typed outcome (`db.claims.Ending`): done, retry,
failed, canceled or released; a row taken back from it ends with none. The exchange
writes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import chess.engine

from db import claims, progress
from db.claims import Ending
from db.errors import TransientDatabaseError
from db.models import AnalysisStatus, ResultLine
from engine import analysis
from engine.batching import Exchange
from engine.metrics import WorkerMetrics
from engine.pool import EngineStartError, Stockfish
from engine.progress import Publisher
from engine.settings import EngineSettings
from runtime import logs

log = logging.getLogger(__name__)

ENGINE_CHECK_SECONDS = 2.0
"""How long an engine may take to answer `isready` after an interrupted search."""
LOCKED_ROW_RECHECK_SECONDS = 0.5
"""A due row exists but another claimer holds it: look again this soon."""
ERROR_PAUSE_SECONDS = 1.0


class Interrupt(enum.Enum):
    """Why a running analysis is stopped before its engine is done."""

    CANCELED = "a client canceled it"
    LOST = "its lease was taken over"
    SHUTDOWN = "the worker is stopping"


@dataclass(frozen=True)
class SlotContext:
    """What every slot of a worker shares."""

    settings: EngineSettings
    pool: asyncpg.Pool
    worker_id: str
    metrics: WorkerMetrics
    exchange: Exchange


class Slot:
    """One engine and the job it runs, if any."""

    def __init__(self, context: SlotContext, engine: Stockfish, number: int) -> None:
        self.context = context
        self.engine = engine
        self.number = number
        self.job: claims.ClaimedJob | None = None
        """The row being analysed; None while the slot waits."""
        self.idle = asyncio.Event()
        """Set while the slot waits for work."""
        self._waker = asyncio.Event()
        self._interrupted = asyncio.Event()
        self._interrupt: Interrupt | None = None
        self._progress: Publisher | None = None
        """The running analysis's progress, until its search ends."""
        self._publication: asyncio.Future[Any] | None = None
        """The last job's publication of its progress, while it may be on its way."""

    def wake(self) -> None:
        """Make a waiting slot look at the queue now."""
        self._waker.set()

    def interrupt(self, reason: Interrupt, job_id: uuid.UUID | None = None) -> None:
        """Stop the running analysis (only if it is `job_id`, when given)."""
        if self.job is None or (job_id is not None and self.job.id != job_id):
            return
        if self._interrupt is None:
            self._interrupt = reason
        self._interrupted.set()

    def watch(self, run_id: uuid.UUID) -> None:
        """Someone watches run `run_id`: publish its progress, if this slot searches it."""
        if self.job is not None and self.job.id == run_id and self._progress is not None:
            self._progress.watch()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and analyse until `stop` is set; the job in hand is seen through."""
        while not stop.is_set():
            try:
                await self._step(stop)
            except Exception:
                # One job's trouble must not end the slot; its row is fenced and leased.
                log.exception("slot %d: unexpected error; carrying on", self.number)
                await first_of(stop, timeout=ERROR_PAUSE_SECONDS)

    async def _step(self, stop: asyncio.Event) -> None:
        if not await self._ensure_engine(stop):
            return
        # Cleared before the claim, so a notification that arrives between an empty
        # claim and the wait is not lost.
        self._waker.clear()
        try:
            job = await self.context.exchange.next_job()
        except TransientDatabaseError as exc:
            log.warning("slot %d: cannot claim: %s", self.number, exc)
            await first_of(stop, timeout=ERROR_PAUSE_SECONDS)
            return
        if job is None:
            await self._wait_for_work(stop)
        else:
            await self._process(job)

    async def _ensure_engine(self, stop: asyncio.Event) -> bool:
        if self.engine.running:
            return True
        try:
            await self.engine.start()
        except EngineStartError as exc:
            log.error("slot %d: %s", self.number, exc)
            await first_of(stop, timeout=ERROR_PAUSE_SECONDS)
            return False
        return True

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        timeout = self.context.settings.poll_interval
        with contextlib.suppress(TransientDatabaseError):
            due = await claims.next_due_in(self.context.pool)
            if due is not None:
                timeout = min(timeout, due if due > 0 else LOCKED_ROW_RECHECK_SECONDS)
        self.idle.set()
        try:
            await first_of(self._waker, stop, timeout=max(timeout, 0.01))
        finally:
            self.idle.clear()

    async def _process(self, job: claims.ClaimedJob) -> None:
        self.job, self._interrupt = job, None
        self._interrupted.clear()
        token = logs.analysis_id.set(str(job.id))
        metrics = self.context.metrics
        metrics.claimed.inc()
        metrics.busy_slots.inc()
        try:
            log.info("analysing (attempt %d of %d)", job.attempts, job.max_attempts)
            await self._analyse(job)
        finally:
            metrics.busy_slots.dec()
            logs.analysis_id.reset(token)
            self.job = None

    async def _analyse(self, job: claims.ClaimedJob) -> None:
        timeout = job.time_limit + self.context.settings.timeout_margin
        metrics = self.context.metrics
        started = asyncio.get_running_loop().time()
        protocol = self.engine.protocol
        publish = functools.partial(progress.publish, self.context.pool)
        publisher = self._progress = Publisher(job, publish, after=self._publication)
        search = asyncio.create_task(analysis.analyse(protocol, job, timeout, publisher))
        interrupted = asyncio.create_task(self._interrupted.wait())
        # The process's exit is watched too: an engine killed between two of python-chess's
        # commands may leave the search waiting for an answer that never comes.
        exited: asyncio.Future[Any] = protocol.returncode
        watched: set[asyncio.Future[Any]] = {search, interrupted, exited}
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
            # However the search ends, its progress is no longer news.
            self._publication = publisher.close()
            self._progress = None
        if not search.done() and not exited.done():
            await self._stop_search(search)
            await self._interrupted_outcome(job)
            return
        if not search.done():
            search.cancel()
            await asyncio.wait({search})
        try:
            if search.cancelled():
                raise chess.engine.EngineTerminatedError("engine process exited")
            analysed = search.result()
        except (chess.engine.EngineTerminatedError, TimeoutError) as exc:
            reason = "engine timed out" if isinstance(exc, TimeoutError) else "engine died"
            log.warning("%s; replacing the engine", reason)
            await self.engine.close()
            metrics.engine_restarts.inc()
            status = await self._end(job, Ending.RETRY, error=reason)
            log.info("now %s", status.value if status else "no longer this worker's")
            return
        except chess.engine.EngineError as exc:
            log.warning("failed: %s", exc)
            await self._end(job, Ending.FAILED, error=f"engine error: {exc}")
            return
        # Written behind the slot's back: its engine goes on with the next analysis.
        duration = asyncio.get_running_loop().time() - started
        outcome = self._outcome(job, Ending.DONE, result=analysed.lines, searched=analysed.searched)
        self.context.exchange.end_behind(outcome, lambda status: self._done(status, duration))

    def _done(self, status: AnalysisStatus | None, duration: float) -> None:
        if status is AnalysisStatus.DONE:
            self.context.metrics.finished.inc()
            self.context.metrics.duration.observe(duration)
            log.info("done")
        else:
            log.warning("the row is no longer this worker's; result dropped")

    def _outcome(
        self,
        job: claims.ClaimedJob,
        ending: Ending,
        *,
        result: list[ResultLine] | None = None,
        error: str | None = None,
        searched: claims.Searched | None = None,
    ) -> claims.Outcome:
        return claims.Outcome.of(
            job,
            self.context.worker_id,
            ending,
            result=result,
            engine_name=self.engine.name,
            error=error,
            searched=searched,
        )

    async def _end(
        self, job: claims.ClaimedJob, ending: Ending, *, error: str | None = None
    ) -> AnalysisStatus | None:
        """End the job's claim (waiting for the write); its row's new status."""
        status = await self.context.exchange.end(self._outcome(job, ending, error=error))
        count_outcome(self.context.metrics, status)
        return status

    async def _stop_search(self, search: asyncio.Task[object]) -> None:
        """Stop the engine's search; replace the engine if it does not settle at once."""
        search.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await search
        try:
            await asyncio.wait_for(self.engine.protocol.ping(), ENGINE_CHECK_SECONDS)
        except (TimeoutError, chess.engine.EngineError):
            await self.engine.close()
            self.context.metrics.engine_restarts.inc()

    async def _interrupted_outcome(self, job: claims.ClaimedJob) -> None:
        reason = self._interrupt or Interrupt.SHUTDOWN
        log.info("stopped: %s", reason.value)
        if reason is Interrupt.CANCELED:
            await self._end(job, Ending.CANCELED)
        elif reason is Interrupt.SHUTDOWN:
            await self.context.exchange.end(self._outcome(job, Ending.RELEASED))


def count_outcome(metrics: WorkerMetrics, status: AnalysisStatus | None) -> None:
    """Count an outcome other than a result by the status its row took."""
    if status is AnalysisStatus.FAILED:
        metrics.failed.inc()
    elif status is AnalysisStatus.CANCELED:
        metrics.canceled.inc()
    elif status is AnalysisStatus.QUEUED:
        metrics.retried.inc()


async def first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of `events` is set or `timeout` seconds have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
