"""Fair turns: tenant A has a backlog, tenant B submits a few afterwards. How long until
B's analyses start, against the first-come-first-served wait behind A's backlog?

The worker's slots claim through the real claim statement (`engine.batching.Exchange`);
an analysis is a sleep of `analysis_seconds` in place of the engine, so the figures are
in analyses and slots, independent of the engine's speed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.noop_worker import FEN, NO_OP_RESULT
from db import claims, submissions, tenants
from db.session import create_pool
from db.settings import DatabaseSettings
from engine import batching

TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Fairness:
    backlog: int
    """Analyses tenant A queued first."""
    newcomer: int
    """Analyses tenant B submitted afterwards."""
    slots: int
    analysis_seconds: float
    a_started_before_b_submitted: int
    """A's analyses already started when B submitted."""
    a_started_before_first_b: int
    """A's analyses started after B submitted and before B's first one started."""
    a_started_before_last_b: int
    """A's analyses started after B submitted and before B's last one started."""
    first_b_wait_seconds: float
    last_b_wait_seconds: float

    @property
    def first_come_first_served_wait_seconds(self) -> float:
        """How long B's first analysis would wait behind A's backlog, in claim order."""
        remaining = self.backlog - self.a_started_before_b_submitted
        return remaining / self.slots * self.analysis_seconds


async def run(
    url: str,
    *,
    backlog: int = 2000,
    newcomer: int = 20,
    slots: int = 4,
    analysis_seconds: float = 0.05,
    head_start: int = 100,
) -> Fairness:
    """A queues `backlog`, the slots start, B submits `newcomer` once A has had
    `head_start` analyses started; the slots stop once B's are all started."""
    settings = DatabaseSettings(pool_size=slots + 2, max_overflow=0)
    pool = await create_pool(settings, url, application_name="bench-fairness")
    try:
        a, _ = await tenants.create(pool, "tenant-a")
        b, _ = await tenants.create(pool, "tenant-b")
        request = submissions.NewAnalysis(FEN, 1, analysis_seconds, None)
        for _ in range(backlog):
            await submissions.enqueue(pool, request, tenant=a, max_queued=10**7)

        worker_id = "bench-fairness"
        exchange = batching.Exchange(
            pool,
            worker_id,
            lease_seconds=60,
            backoff=claims.NO_BACKOFF,
            ahead=slots,
            ahead_below=0,
        )
        started: list[tuple[float, object]] = []  # (when, analysis id) in claim order
        b_ids: set[object] = set()
        all_b_started = asyncio.Event()
        a_head_start = asyncio.Event()

        def check_b() -> None:
            if len(b_ids) == newcomer and b_ids <= {job_id for _, job_id in started}:
                all_b_started.set()

        async def slot() -> None:
            while not all_b_started.is_set():
                job = await exchange.next_job()
                if job is None:
                    return
                started.append((time.perf_counter(), job.id))
                if len(started) >= head_start:
                    a_head_start.set()
                check_b()
                await asyncio.sleep(analysis_seconds)
                outcome = claims.Outcome.of(
                    job, worker_id, claims.Ending.DONE, result=NO_OP_RESULT, engine_name="no-op"
                )
                exchange.end_behind(outcome, lambda _status: None)

        slots_running = [asyncio.create_task(slot()) for _ in range(slots)]
        await asyncio.wait_for(a_head_start.wait(), TIMEOUT_SECONDS)
        before = len(started)
        submitted_at = time.perf_counter()
        for _ in range(newcomer):
            stored = await submissions.enqueue(pool, request, tenant=b, max_queued=10**7)
            assert not isinstance(stored, submissions.Refusal), stored
            b_ids.add(stored.id)
        check_b()
        await asyncio.wait_for(all_b_started.wait(), TIMEOUT_SECONDS)
        await asyncio.wait_for(asyncio.gather(*slots_running), TIMEOUT_SECONDS)
        await exchange.drain(TIMEOUT_SECONDS)

        after = started[before:]
        b_positions = [index for index, (_, job_id) in enumerate(after) if job_id in b_ids]
        b_times = [when for when, job_id in after if job_id in b_ids]
        return Fairness(
            backlog=backlog,
            newcomer=newcomer,
            slots=slots,
            analysis_seconds=analysis_seconds,
            a_started_before_b_submitted=before,
            a_started_before_first_b=b_positions[0],
            a_started_before_last_b=b_positions[-1] - (newcomer - 1),
            first_b_wait_seconds=b_times[0] - submitted_at,
            last_b_wait_seconds=b_times[-1] - submitted_at,
        )
    finally:
        await pool.close()
