"""Queue throughput: N trivial jobs enqueued, then drained with a no-op in place of the
engine, through this project's claim/finish path and through pgqueuer and procrastinate,
on the same server in the same run, each across its own settings: a peer is compared at
its best, never at a default.

- pgqueuer: `batch_size` (jobs fetched per dequeue) from 10 up, multiplied by 4 while the
  drain rate still gains 5 %;
- procrastinate: `concurrency` and whether finished jobs are deleted;
- this project: how many rows a slot may claim ahead (`most_ahead_per_slot`);
- both: how many worker processes drain the queue together (this project's processes
  with its shipped setting, pgqueuer's swept again for each number of processes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass

import asyncpg

from bench import drainers, noop_worker
from bench.databases import scratch
from bench.noop_worker import FEN
from db import migrations
from db.settings import asyncpg_dsn
from engine import batching

TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Throughput:
    system: str
    setting: str
    """The settings it ran with."""
    jobs: int
    enqueue_seconds: float
    drain_seconds: float
    processes: int = 1
    knob: int = 0
    """This project's claim-ahead bound, pgqueuer's batch size."""
    repeat: bool = False
    """A repeat of the system's best setting (the headline compares their medians)."""

    @property
    def drain_rate(self) -> float:
        return self.jobs / self.drain_seconds

    @property
    def enqueue_rate(self) -> float:
        return self.jobs / self.enqueue_seconds


async def ours(
    server_url: str,
    jobs: int,
    slots: int,
    most_ahead_per_slot: int = batching.MOST_AHEAD_PER_SLOT,
    processes: int = 1,
) -> Throughput:
    """`processes` worker processes of `slots` slots each (`bench.noop_worker`)."""
    async with scratch(server_url, "ours") as url:
        await asyncio.to_thread(migrations.upgrade, url)
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            enqueued = await noop_worker.store_jobs(connection, jobs)
            command = ["bench.noop_worker", url, str(slots), str(most_ahead_per_slot)]
            async with drainers.ready([command] * processes) as go:
                drained, counts = await go()
            assert sum(counts) == jobs, counts
            await noop_worker.assert_all_done(connection, jobs)
        finally:
            await connection.close()
    setting = f"claim ahead <= {most_ahead_per_slot}/slot"
    if processes > 1:
        setting = f"{processes} processes x {slots} slots, {setting}"
    return Throughput(
        "chess-analysis", setting, jobs, enqueued, drained, processes, most_ahead_per_slot
    )


async def pgqueuer(server_url: str, jobs: int, processes: int, batch_size: int) -> Throughput:
    """`processes` pgqueuer processes (`bench.pgqueuer_worker`) at `batch_size`."""
    import asyncpg
    from pgqueuer import AsyncpgPoolDriver, Queries

    async with scratch(server_url, "pgqueuer") as url:
        pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2)
        try:
            queries = Queries(AsyncpgPoolDriver(pool))
            await queries.install()
            started = time.perf_counter()
            payload = json.dumps({"fen": FEN}).encode()
            await queries.enqueue(["analyse"] * jobs, [payload] * jobs, [0] * jobs)
            enqueued = time.perf_counter() - started
        finally:
            await pool.close()
        command = ["bench.pgqueuer_worker", url, str(batch_size)]
        async with drainers.ready([command] * processes) as go:
            drained, counts = await go()
        assert sum(counts) == jobs, counts
    setting = f"batch_size={batch_size}"
    if processes > 1:
        setting = f"{processes} processes, {setting}"
    return Throughput("pgqueuer", setting, jobs, enqueued, drained, processes, batch_size)


async def procrastinate(
    server_url: str, jobs: int, concurrency: int, delete_jobs: str
) -> Throughput:
    import procrastinate as pc

    async with scratch(server_url, "procrastinate") as url:
        connector = pc.PsycopgConnector(conninfo=asyncpg_dsn(url), max_size=concurrency + 2)
        app = pc.App(connector=connector)
        done = 0

        @app.task(name="analyse")
        async def analyse(fen: str) -> None:  # noqa: ARG001 (the no-op job ignores it)
            nonlocal done
            done += 1

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            started = time.perf_counter()
            await analyse.batch_defer_async(*({"fen": FEN} for _ in range(jobs)))
            enqueued = time.perf_counter() - started
            started = time.perf_counter()
            await asyncio.wait_for(
                app.run_worker_async(
                    wait=False,
                    concurrency=concurrency,
                    delete_jobs=delete_jobs,
                    install_signal_handlers=False,
                ),
                TIMEOUT_SECONDS,
            )
            drained = time.perf_counter() - started
        assert done == jobs, done
        setting = f"concurrency={concurrency} delete_jobs={delete_jobs}"
        return Throughput("procrastinate", setting, jobs, enqueued, drained)


GAIN = 1.05
"""A larger pgqueuer batch is tried while the last one gained at least 5 %."""
PGQUEUER_FIRST_BATCH = 10
PGQUEUER_MOST_BATCH = 10_000
PROCRASTINATE_SETTINGS = [(8, "never"), (32, "never"), (32, "always"), (128, "never")]
OUR_AHEAD = [batching.MOST_AHEAD_PER_SLOT, 4, 64]
PROCESSES = [2, 4]
REPEATS = 3
"""Runs of each system's best setting, taken in turns, whose medians make the headline:
one run on a shared 2-core machine varies by about a tenth."""


async def run(server_url: str, jobs: int, workers: int) -> list[Throughput]:
    """Each system across its settings, in turn, each run on its own database of the same
    server; this project's first row is its shipped setting."""
    rows = [await ours(server_url, jobs, workers, ahead) for ahead in OUR_AHEAD]
    rows += await pgqueuer_sweep(server_url, jobs, 1)
    for processes in PROCESSES:
        rows.append(await ours(server_url, jobs, workers, processes=processes))
        rows += await pgqueuer_sweep(server_url, jobs, processes)
    for concurrency, delete_jobs in PROCRASTINATE_SETTINGS:
        rows.append(await procrastinate(server_url, min(jobs, 5_000), concurrency, delete_jobs))
    best = best_of(rows)
    ours_best, pgqueuer_best = best["chess-analysis"], best["pgqueuer"]
    for _ in range(REPEATS):
        again = await ours(server_url, jobs, workers, ours_best.knob, ours_best.processes)
        rows.append(dataclasses.replace(again, repeat=True))
        again = await pgqueuer(server_url, jobs, pgqueuer_best.processes, pgqueuer_best.knob)
        rows.append(dataclasses.replace(again, repeat=True))
    return rows


async def pgqueuer_sweep(server_url: str, jobs: int, processes: int) -> list[Throughput]:
    """pgqueuer in `processes` processes, its batch size from 10 up, times 4 while the
    drain still gains 5 %."""
    rows: list[Throughput] = []
    best = 0.0
    batch = PGQUEUER_FIRST_BATCH
    while batch <= PGQUEUER_MOST_BATCH:
        row = await pgqueuer(server_url, jobs, processes, batch)
        rows.append(row)
        if row.drain_rate < best * GAIN:
            break
        best = max(best, row.drain_rate)
        batch *= 4
    return rows


def best_of(rows: list[Throughput]) -> dict[str, Throughput]:
    """Each system's best row (by drain rate)."""
    best: dict[str, Throughput] = {}
    for row in rows:
        if row.system not in best or row.drain_rate > best[row.system].drain_rate:
            best[row.system] = row
    return best
