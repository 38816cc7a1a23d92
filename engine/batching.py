"""One writer of outcomes, and one statement for many slots: the ends of the claims of
every slot done and claims for every slot that asks, together.

Every end of a claim (a result, a retry, a failure, a cancellation, a row given back)
goes through `Exchange.end`. A slot that finishes an analysis hands its result over and
asks for its next row at once; the two travel in one statement (one round trip, one
commit), together with those of every other slot doing the same. A request waits one
turn of the event loop for companions, so a lone slot pays nothing noticeable, and a
busy worker (or a queue of shallow analyses) spends a statement on many jobs instead of
two per job. Statements go one at a time; what arrives meanwhile rides on the next.
Every row stays fenced by its own claim token.

A statement that fails for a reason of the moment (the database away, a failover, a
canceled query) is not the outcomes' fault: they stay in hand and go again after a
short backoff, however long the outage lasts, so a result is never dropped while its
worker lives. Only the fence can refuse them, if the row was taken back meanwhile.

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
import logging
import math
import random
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from db import claims, errors
from db.models import AnalysisStatus

log = logging.getLogger(__name__)

RECENT_WEIGHT = 0.2
"""Weight of the latest figure in the running averages of analysis and statement times."""
MOST_AHEAD_PER_SLOT = 16
"""Rows claimed ahead per slot, at most (however short the analyses). The drain of no-op
jobs across this bound (`make bench`, 8 slots, one run): 4 → 11,000 jobs/s, 16 → 14,800,
64 → 15,500 (within the noise of 16, for four times the rows held); analyses of a
millisecond or more take far fewer (one per analysis that fits in a statement's round
trip)."""
TRACKED_JOBS = 1024
"""Hand-out times kept for the average (rows that never report a result drop out)."""
FIRST_RETRY_SECONDS = 0.1
MOST_RETRY_SECONDS = 2.0
"""Backoff of a statement that failed for a reason of the moment."""


class Exchange:
    """Hands claimed rows to the slots that ask and records the results they hand over.

    A slot need not wait for its result to be written: `end_behind` hands it over and
    returns, so the slot's engine takes its next analysis at once. Until written, the
    row is listed in `unwritten`, and the worker's heartbeat keeps its lease.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        worker_id: str,
        lease_seconds: float,
        backoff: claims.Backoff,
        *,
        ahead: int = 0,
        ahead_below: float = 0.0,
        most_ahead_per_slot: int = MOST_AHEAD_PER_SLOT,
    ) -> None:
        """Rows are claimed ahead for `ahead` slots while analyses average under
        `ahead_below` seconds (from hand-out to result): as many per slot as analyses fit
        in a statement's round trip, at least one, at most `most_ahead_per_slot`."""
        self._pool = pool
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._backoff = backoff
        self._ahead = ahead
        self._ahead_below = ahead_below
        self._most_ahead_per_slot = most_ahead_per_slot
        self._ready: deque[claims.ClaimedJob] = deque()
        self._handed_out: OrderedDict[uuid.UUID, float] = OrderedDict()
        self._typical_seconds: float | None = None
        self._round_trip_seconds = 0.0
        self._refill = False
        self._asking: list[asyncio.Future[claims.ClaimedJob | None]] = []
        self._outcomes: list[tuple[claims.Outcome, asyncio.Future[AnalysisStatus | None]]] = []
        self._turns: asyncio.Task[None] | None = None
        self._behind: set[asyncio.Future[AnalysisStatus | None]] = set()
        self.unwritten: set[uuid.UUID] = set()
        """Rows whose result waits to be written: their leases must be kept."""

    @property
    def claimed_ahead(self) -> set[uuid.UUID]:
        """Rows claimed ahead that no slot runs yet: their leases must be kept."""
        return {job.id for job in self._ready}

    async def next_job(self) -> claims.ClaimedJob | None:
        """A claimed row for the calling slot, or None when none is due."""
        if self._ready:
            job: claims.ClaimedJob | None = self._ready.popleft()
            self._refill = True
            self._start()
        else:
            asking: asyncio.Future[claims.ClaimedJob | None] = (
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

    def take_back(self, job_id: uuid.UUID) -> claims.ClaimedJob | None:
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
        given_back = [self._give_back(job) for job in self._ready]
        self._ready.clear()
        await asyncio.gather(*given_back, return_exceptions=True)

    async def end(self, outcome: claims.Outcome) -> AnalysisStatus | None:
        """Write the end of a claim of this worker's (riding on the next statement); the
        row's new status, or None when the row is no longer that claim's to end."""
        return await self._ended(outcome)

    def end_behind(
        self,
        outcome: claims.Outcome,
        written: Callable[[AnalysisStatus | None], None],
    ) -> None:
        """Write `outcome` without waiting for it; `written` is called with the new status
        (from a callback of the write: no task per outcome, which a queue of short
        analyses would pay for on every row)."""

        def done(future: asyncio.Future[AnalysisStatus | None]) -> None:
            self.unwritten.discard(outcome.id)
            self._behind.discard(future)
            if future.cancelled():
                return
            if (exc := future.exception()) is not None:
                log.error("recording the outcome of %s failed", outcome.id, exc_info=exc)
                return
            try:
                written(future.result())
            except Exception:
                log.exception("after recording the outcome of %s", outcome.id)

        self.unwritten.add(outcome.id)
        future = self._ended(outcome)
        self._behind.add(future)
        future.add_done_callback(done)

    def _ended(self, outcome: claims.Outcome) -> asyncio.Future[AnalysisStatus | None]:
        """`outcome` riding on the next statement: its row's new status, once written."""
        if outcome.ending is claims.Ending.DONE:
            handed_out = self._handed_out.pop(outcome.id, None)
            if handed_out is not None:
                took = asyncio.get_running_loop().time() - handed_out
                typical = self._typical_seconds
                self._typical_seconds = took if typical is None else _averaged(typical, took)
        written: asyncio.Future[AnalysisStatus | None] = asyncio.get_running_loop().create_future()
        self._outcomes.append((outcome, written))
        self._start()
        return written

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) for every result handed over to be written."""
        if self._behind:
            await asyncio.wait(set(self._behind), timeout=timeout)

    async def close(self) -> None:
        """Stop writing: what is still unwritten is left to the leases (the sweep)."""
        pending: list[asyncio.Future[Any]] = [
            *self._behind,
            *([self._turns] if self._turns else []),
        ]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

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
        delay = FIRST_RETRY_SECONDS
        while self._asking or self._outcomes or self._refill:
            await asyncio.sleep(0)  # let other slots asking or finishing now join in
            asking = [future for future in self._asking if not future.done()]
            outcomes, self._asking, self._outcomes = self._outcomes, [], []
            self._refill = False
            ahead = self._wanted_ahead()
            if not asking and not outcomes and not ahead:
                continue
            sent = asyncio.get_running_loop().time()
            try:
                exchanged = await claims.exchange(
                    self._pool,
                    self._worker_id,
                    self._lease_seconds,
                    claim=len(asking) + ahead,
                    outcomes=[outcome for outcome, _ in outcomes],
                    backoff=self._backoff,
                )
            except errors.TransientDatabaseError as exc:
                # Askers hear of it (their slots pause); outcomes wait for the next try.
                _fail(asking, exc)
                self._outcomes[:0] = outcomes
                log.warning("outcomes and claims not written (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, MOST_RETRY_SECONDS)
                continue
            except Exception as exc:
                _fail([*asking, *(written for _, written in outcomes)], exc)
                continue
            delay = FIRST_RETRY_SECONDS
            took = asyncio.get_running_loop().time() - sent
            self._round_trip_seconds = _averaged(self._round_trip_seconds, took)
            for outcome, written in outcomes:
                if not written.done():
                    written.set_result(exchanged.ended.get(outcome.id))
            self._hand_out(asking, exchanged.claimed)

    def _hand_out(
        self, asking: list[asyncio.Future[claims.ClaimedJob | None]], jobs: list[claims.ClaimedJob]
    ) -> None:
        claimed = deque(jobs)
        for future in asking:
            if not future.done():
                future.set_result(claimed.popleft() if claimed else None)
        # Rows beyond the askers (or of askers that stopped waiting) wait for the next
        # slot that asks, if claiming ahead is still wanted; otherwise they go back
        # with the next statement.
        while claimed:
            job = claimed.popleft()
            if self._ahead > 0:
                self._ready.append(job)
            else:
                self._give_back(job)

    def _give_back(self, job: claims.ClaimedJob) -> asyncio.Future[AnalysisStatus | None]:
        # A row nobody runs would wait for its lease to expire; this is quicker.
        outcome = claims.Outcome.of(job, self._worker_id, claims.Ending.RELEASED)
        written: asyncio.Future[AnalysisStatus | None] = asyncio.get_running_loop().create_future()
        written.add_done_callback(_log_failure)
        self._outcomes.append((outcome, written))
        self._start()
        return written


def _log_failure(written: asyncio.Future[AnalysisStatus | None]) -> None:
    if not written.cancelled() and written.exception() is not None:
        log.warning("giving back a row failed (its lease will): %s", written.exception())


def _fail(futures: Sequence[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)


def _averaged(average: float, latest: float) -> float:
    return average + RECENT_WEIGHT * (latest - average)
