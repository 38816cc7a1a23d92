"""One statement for many slots: the results of every slot done and claims for every slot
that asks, together.

A slot that finishes an analysis hands its result over and asks for its next row at
once; the two travel in one statement (one round trip, one commit), together with those
of every other slot doing the same. A request waits one turn of the event loop for
companions, so a lone slot pays nothing noticeable, and a busy worker (or a queue of
shallow analyses) spends a statement on many jobs instead of two per job. Statements go
one at a time; what arrives meanwhile rides on the next. Every row stays fenced by its
own claim token.

While the analyses run short (a shallow depth limit: a few milliseconds each), a slot
would spend as long waiting for its next claim as its engine spends thinking. Then the
exchange also claims rows ahead, as many per slot as analyses fit in a statement's round
trip (at least one, at most a few), so a slot that asks gets one at once while the next
statement is on its way. Rows claimed ahead are held for a few short analyses at most;
their leases are kept by the heartbeat like any other, a cancellation or a lost lease
takes them out, and on shutdown they go straight back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db import queue
from db.models import ResultLine

log = logging.getLogger(__name__)

RECENT_WEIGHT = 0.2
"""Weight of the latest figure in the running averages of analysis and statement times."""
MOST_AHEAD_PER_SLOT = 4
"""Rows claimed ahead per slot, at most (however short the analyses)."""
TRACKED_JOBS = 1024
"""Hand-out times kept for the average (rows that never report a result drop out)."""


class Exchange:
    """Hands claimed rows to the slots that ask and records the results they hand over.

    A slot need not wait for its result to be written: `write_behind` hands it over and
    returns, so the slot's engine takes its next analysis at once. Until written, the
    row is listed in `unwritten`, and the worker's heartbeat keeps its lease.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        database: AsyncEngine,
        worker_id: str,
        lease_seconds: float,
        *,
        ahead: int = 0,
        ahead_below: float = 0.0,
        most_ahead_per_slot: int = MOST_AHEAD_PER_SLOT,
    ) -> None:
        """Rows are claimed ahead for `ahead` slots while analyses average under
        `ahead_below` seconds (from hand-out to result): as many per slot as analyses fit
        in a statement's round trip, at least one, at most `most_ahead_per_slot`."""
        self._pool = pool
        self._database = database
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._ahead = ahead
        self._ahead_below = ahead_below
        self._most_ahead_per_slot = most_ahead_per_slot
        self._ready: deque[queue.ClaimedJob] = deque()
        self._handed_out: OrderedDict[uuid.UUID, float] = OrderedDict()
        self._typical_seconds: float | None = None
        self._round_trip_seconds = 0.0
        self._refill = False
        self._asking: list[asyncio.Future[queue.ClaimedJob | None]] = []
        self._results: list[tuple[queue.Outcome, asyncio.Future[bool]]] = []
        self._turns: asyncio.Task[None] | None = None
        self._behind: set[asyncio.Task[None]] = set()
        self.unwritten: set[uuid.UUID] = set()
        """Rows whose result waits to be written: their leases must be kept."""

    @property
    def claimed_ahead(self) -> set[uuid.UUID]:
        """Rows claimed ahead that no slot runs yet: their leases must be kept."""
        return {job.id for job in self._ready}

    async def next_job(self) -> queue.ClaimedJob | None:
        """A claimed row for the calling slot, or None when none is due."""
        if self._ready:
            job: queue.ClaimedJob | None = self._ready.popleft()
            self._refill = True
            self._start()
        else:
            asking: asyncio.Future[queue.ClaimedJob | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._asking.append(asking)
            self._start()
            job = await asking
        if job is not None:
            self._handed_out[job.id] = asyncio.get_running_loop().time()
            if len(self._handed_out) > TRACKED_JOBS:
                self._handed_out.popitem(last=False)
        return job

    def take_back(self, job_id: uuid.UUID) -> queue.ClaimedJob | None:
        """Remove a row claimed ahead (canceled, or its lease lost); None if not held."""
        for job in self._ready:
            if job.id == job_id:
                self._ready.remove(job)
                return job
        return None

    def stop_claiming_ahead(self) -> None:
        """From now on claim only for slots that ask (the worker is stopping)."""
        self._ahead = 0

    async def settled(self) -> None:
        """Wait until no statement is under way or waiting to go."""
        while self._turns is not None and not self._turns.done():
            await asyncio.wait({self._turns})

    async def give_back_ahead(self) -> None:
        """Put the rows claimed ahead back in the queue (once no slot asks any more)."""
        self.stop_claiming_ahead()
        await self.settled()
        while self._ready:
            await self._give_back(self._ready.popleft())

    async def finish(
        self, job: queue.ClaimedJob, result: Sequence[ResultLine], engine_name: str
    ) -> bool:
        """Record the result; False when the row is no longer this claim's to finish."""
        loop = asyncio.get_running_loop()
        handed_out = self._handed_out.pop(job.id, None)
        if handed_out is not None:
            took = loop.time() - handed_out
            typical = self._typical_seconds
            self._typical_seconds = took if typical is None else _averaged(typical, took)
        written: asyncio.Future[bool] = loop.create_future()
        self._results.append((queue.Outcome(job, result, engine_name), written))
        self._start()
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

    def _start(self) -> None:
        if self._turns is None or self._turns.done():
            self._turns = asyncio.create_task(self._take_turns())

    def _wanted_ahead(self) -> int:
        """Enough rows for each slot to keep busy while the next statement is on its way:
        one per analysis that fits in a round trip, at least one, at most a few."""
        typical = self._typical_seconds
        if typical is None or typical >= self._ahead_below:
            return 0
        most = self._most_ahead_per_slot
        fit = self._round_trip_seconds / typical if typical > 0 else most
        per_slot = max(1, min(most, math.ceil(fit)))
        return max(0, self._ahead * per_slot - len(self._ready))

    async def _take_turns(self) -> None:
        while self._asking or self._results or self._refill:
            await asyncio.sleep(0)  # let other slots asking or finishing now join in
            asking = [future for future in self._asking if not future.done()]
            results, self._asking, self._results = self._results, [], []
            self._refill = False
            ahead = self._wanted_ahead()
            if not asking and not results and not ahead:
                continue
            sent = asyncio.get_running_loop().time()
            try:
                exchanged = await queue.exchange(
                    self._pool,
                    self._worker_id,
                    self._lease_seconds,
                    claim=len(asking) + ahead,
                    outcomes=[outcome for outcome, _ in results],
                )
            except Exception as exc:
                waiting: list[asyncio.Future[Any]] = [*asking, *(w for _, w in results)]
                for future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            took = asyncio.get_running_loop().time() - sent
            self._round_trip_seconds = _averaged(self._round_trip_seconds, took)
            for outcome, written in results:
                if not written.done():
                    written.set_result(outcome.job.id in exchanged.finished)
            await self._hand_out(asking, exchanged.claimed)

    async def _hand_out(
        self, asking: list[asyncio.Future[queue.ClaimedJob | None]], jobs: list[queue.ClaimedJob]
    ) -> None:
        claimed = deque(jobs)
        for future in asking:
            if not future.done():
                future.set_result(claimed.popleft() if claimed else None)
        # Rows beyond the askers (or of askers that stopped waiting) wait for the next
        # slot that asks, if claiming ahead is still wanted; otherwise they go back.
        while claimed:
            job = claimed.popleft()
            if self._ahead > 0:
                self._ready.append(job)
            else:
                await self._give_back(job)

    async def _give_back(self, job: queue.ClaimedJob) -> None:
        # A row nobody runs would wait for its lease to expire; this is quicker. If it
        # fails, the lease does the same later.
        with contextlib.suppress(Exception):
            await queue.release(self._database, job, self._worker_id)


def _averaged(average: float, latest: float) -> float:
    return average + RECENT_WEIGHT * (latest - average)
