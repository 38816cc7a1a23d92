"""What one PostgreSQL carries: the queue's drain of no-op jobs across worker processes
and slots per process, with the server's CPU and WAL bytes per thousand jobs and the
connections each process holds (docs/scaling.md reads its figures from here).

Every worker process is `bench.noop_worker`: the worker's own claim and write path, a
no-op in place of the engine. Two regimes:

- claiming ahead (as for short analyses): a statement carries the ends and claims of
  many rows;
- one row per slot per statement (as for analyses of a second or more, which claim no
  row ahead): the cost per job of real work at its dearest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import drainers, noop_worker, server_load, services
from bench.databases import scratch
from db import migrations
from db.settings import asyncpg_dsn
from engine import batching

AHEAD_RUNS = [(1, 1), (1, 2), (1, 8), (1, 32), (2, 8), (4, 8), (8, 8)]
"""(worker processes, slots each) while claiming ahead."""
ONE_ROW_RUNS = [(1, 8), (2, 8), (4, 8), (8, 8)]
"""(worker processes, slots each) with one row per slot per statement."""


@dataclass(frozen=True)
class Drain:
    processes: int
    slots_per_process: int
    claim_ahead: bool
    jobs: int
    seconds: float
    server_cpu_seconds: float | None
    """The server's CPU during the drain (None when it does not run on this machine)."""
    wal_bytes: int
    connections: int
    """Connections to the benchmark's database while the workers ran."""

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def server_cpu_ms_per_1000(self) -> float | None:
        if self.server_cpu_seconds is None:
            return None
        return 1000 * self.server_cpu_seconds / self.jobs * 1000

    @property
    def wal_kb_per_1000(self) -> float:
        return self.wal_bytes / self.jobs


@dataclass(frozen=True)
class Scaling:
    drains: list[Drain]
    service_connections: dict[str, int]
    """Connections an API process and a worker process hold, idle, by application name."""


async def drain(
    server_url: str,
    postmaster: int | None,
    jobs: int,
    processes: int,
    slots: int,
    claim_ahead: bool,
) -> Drain:
    async with scratch(server_url, "scaling") as url:
        await asyncio.to_thread(migrations.upgrade, url)
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await noop_worker.store_jobs(connection, jobs)
            await connection.execute("VACUUM ANALYZE analyses")
            ahead = batching.MOST_AHEAD_PER_SLOT if claim_ahead else 0
            command = ["bench.noop_worker", url, str(slots), str(ahead)]
            async with drainers.ready([command] * processes) as go:
                wal_before = await server_load.wal_lsn(url)
                cpu_before = server_load.cpu_seconds(postmaster)
                running = asyncio.create_task(go())
                connections = await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = 'bench-noop-worker'"
                )
                seconds, counts = await running
                cpu_after = server_load.cpu_seconds(postmaster)
                wal_after = await server_load.wal_lsn(url)
            assert sum(counts) == jobs, counts
            await noop_worker.assert_all_done(connection, jobs)
        finally:
            await connection.close()
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Drain(
        processes, slots, claim_ahead, jobs, seconds, cpu, wal_after - wal_before, connections
    )


async def service_connections(server_url: str, logs: Path) -> dict[str, int]:
    """An API process and a worker process started as `make run` starts them, once both
    answer (the API's readiness, the worker listening), idle."""
    async with scratch(server_url, "connections") as url:
        await asyncio.to_thread(migrations.upgrade, url)
        async with services.running(url, logs, workers=1, slots=2):
            connection = await asyncpg.connect(asyncpg_dsn(url))
            try:
                rows = await connection.fetch(
                    "SELECT application_name, count(*) AS n FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " GROUP BY application_name ORDER BY application_name"
                )
            finally:
                await connection.close()
    return {row["application_name"]: row["n"] for row in rows}


async def run(server_url: str, pgdata: Path | None, logs: Path, jobs: int) -> Scaling:
    postmaster = server_load.local_postmaster(pgdata)
    drains = [
        await drain(server_url, postmaster, jobs, processes, slots, claim_ahead=True)
        for processes, slots in AHEAD_RUNS
    ]
    drains += [
        await drain(server_url, postmaster, jobs // 4, processes, slots, claim_ahead=False)
        for processes, slots in ONE_ROW_RUNS
    ]
    return Scaling(drains, await service_connections(server_url, logs))
