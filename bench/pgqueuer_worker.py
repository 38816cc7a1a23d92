"""`python -m bench.pgqueuer_worker URL BATCH_SIZE`: one pgqueuer process of the queue
benchmark (see `bench.drainers`): a `QueueManager` draining no-op jobs."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from pgqueuer import AsyncpgPoolDriver, Job, Queries, QueueManager
from pgqueuer.domain.types import QueueExecutionMode

from bench.drainers import say, wait_for_go
from db.settings import asyncpg_dsn


async def main(url: str, batch_size: int) -> int:
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=2, max_size=10)
    try:
        manager = QueueManager(Queries(AsyncpgPoolDriver(pool)))
        done = 0

        @manager.entrypoint("analyse")
        async def analyse(_job: Job) -> None:
            nonlocal done
            done += 1

        say("ready")
        await wait_for_go()
        await manager.run(mode=QueueExecutionMode.drain, batch_size=batch_size)
        say(str(done))
        return 0
    finally:
        await pool.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
