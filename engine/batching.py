"""One statement for many slots: claims for every idle slot, finishes for every slot done.

When several slots want work at once, one claim statement takes a row for each of them;
when several analyses finish at once, one statement records them all. A request waits
one turn of the event loop for companions, so a lone slot pays nothing noticeable, and a
busy worker (or a queue of shallow analyses) spends a statement on many jobs instead of
one. Every row stays fenced by its own claim token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Sequence

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db import queue
from db.models import ResultLine

log = logging.getLogger(__name__)


class Claims:
    """Hands claimed rows to the slots that ask, claiming for all of them at once."""

    def __init__(
        self, pool: asyncpg.Pool, database: AsyncEngine, worker_id: str, lease_seconds: float
    ) -> None:
        self._pool = pool
        self._database = database
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._waiting: list[asyncio.Future[queue.ClaimedJob | None]] = []
        self._claiming: asyncio.Task[None] | None = None

    async def next_job(self) -> queue.ClaimedJob | None:
        """A claimed row for the calling slot, or None when none is due."""
        waiter: asyncio.Future[queue.ClaimedJob | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.create_task(self._claim())
        return await waiter

    async def _claim(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # let other slots that are asking now join in
            waiters = [waiter for waiter in self._waiting if not waiter.done()]
            self._waiting.clear()
            if not waiters:
                return
            try:
                jobs = await queue.claim(
                    self._pool, self._worker_id, self._lease_seconds, limit=len(waiters)
                )
            except Exception as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for index, waiter in enumerate(waiters):
                job = jobs[index] if index < len(jobs) else None
                if not waiter.done():
                    waiter.set_result(job)
                elif job is not None:
                    # Its slot stopped waiting meanwhile: the row goes straight back.
                    await self._give_back(job)

    async def _give_back(self, job: queue.ClaimedJob) -> None:
        # A row nobody runs would wait for its lease to expire; this is quicker. If it
        # fails, the lease does the same later.
        with contextlib.suppress(Exception):
            await queue.release(self._database, job, self._worker_id)


class Finishes:
    """Records results, as many as are ready, in one statement.

    A slot need not wait for its result to be written: `write_behind` hands it over and
    returns, so the slot's engine takes its next analysis at once. Until written, the
    row is listed in `unwritten`, and the worker's heartbeat keeps its lease.
    """

    def __init__(self, pool: asyncpg.Pool, worker_id: str) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._pending: list[tuple[queue.Outcome, asyncio.Future[bool]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._behind: set[asyncio.Task[None]] = set()
        self.unwritten: set[uuid.UUID] = set()
        """Rows whose result waits to be written: their leases must be kept."""

    async def finish(
        self, job: queue.ClaimedJob, result: Sequence[ResultLine], engine_name: str
    ) -> bool:
        """Record the result; False when the row is no longer this claim's to finish."""
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((queue.Outcome(job, result, engine_name), written))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write())
        return await written

    def write_behind(self, job: queue.ClaimedJob, write: Awaitable[object]) -> None:
        """Run `write` (which records `job`'s result) without waiting for it."""

        async def tracked() -> None:
            try:
                await write
            except Exception:
                log.exception("recording the result of %s failed", job.id)
            finally:
                self.unwritten.discard(job.id)

        self.unwritten.add(job.id)
        task = asyncio.create_task(tracked())
        self._behind.add(task)
        task.add_done_callback(self._behind.discard)

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) for every result handed over to be written."""
        if self._behind:
            await asyncio.wait(set(self._behind), timeout=timeout)

    async def _write(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let other slots finishing now join in
            batch, self._pending = self._pending, []
            try:
                done = await queue.finish_many(
                    self._pool, self._worker_id, [outcome for outcome, _ in batch]
                )
            except Exception as exc:
                for _, written in batch:
                    if not written.done():
                        written.set_exception(exc)
                continue
            for outcome, written in batch:
                if not written.done():
                    written.set_result(outcome.job.id in done)
