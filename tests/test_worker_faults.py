"""The worker against failing engines and cancellation, with real Stockfish processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import chess
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db import cancellation, submissions
from db.models import AnalysisStatus
from engine.worker import Worker
from tests.conftest import WorkerFactory
from tests.rows import request, store, wait_terminal

LONG = 30.0
"""A time limit no test waits for: the analysis must be stopped or killed."""


async def wait_running(database: AsyncEngine, row_id: object, attempt: int) -> None:
    async with asyncio.timeout(20):
        while True:
            row = await submissions.get(database, row_id)  # type: ignore[arg-type]
            assert row is not None
            if row.status is AnalysisStatus.RUNNING and row.attempts == attempt:
                return
            await asyncio.sleep(0.02)


def engine_pids(worker: Worker) -> set[int]:
    return {pid for slot in worker.slots if (pid := slot.engine.pid) is not None}


async def test_a_killed_engine_is_replaced_and_its_analysis_retried(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    worker = await start_worker(slots=1, retry_base_delay=0.05)
    row = await store(database, request(chess.STARTING_FEN, time_limit=1.5))
    await wait_running(database, row.id, attempt=1)
    [pid] = engine_pids(worker)
    os.kill(pid, signal.SIGKILL)
    done = await wait_terminal(database, row, timeout=30)
    assert done.status is AnalysisStatus.DONE
    assert done.attempts == 2
    assert (done.result_lines() or [])[0].centipawn_score is not None
    assert engine_pids(worker) - {pid}, "a new engine process runs"


async def test_a_position_that_kills_the_engine_every_time_ends_failed(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    worker = await start_worker(slots=1, retry_base_delay=0.05)
    row = await store(database, request(chess.STARTING_FEN, time_limit=LONG, max_attempts=3))
    for attempt in (1, 2, 3):
        await wait_running(database, row.id, attempt)
        for pid in engine_pids(worker):
            os.kill(pid, signal.SIGKILL)
    failed = await wait_terminal(database, row, timeout=30)
    assert failed.status is AnalysisStatus.FAILED
    assert failed.error == "engine died (gave up after 3 attempts)"
    # The worker survived and goes on analysing.
    after = await store(database, request(depth=4))
    assert (await wait_terminal(database, after)).status is AnalysisStatus.DONE


async def test_an_engine_that_overruns_its_time_is_replaced_and_retried(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    # A margin of a microsecond: every search overruns its bound, as a hung engine would.
    await start_worker(slots=1, timeout_margin=1e-6, retry_base_delay=0.01)
    row = await store(database, request(chess.STARTING_FEN, time_limit=0.2, max_attempts=2))
    failed = await wait_terminal(database, row, timeout=30)
    assert failed.status is AnalysisStatus.FAILED
    assert failed.error == "engine timed out (gave up after 2 attempts)"


async def test_canceling_a_running_analysis_stops_its_engine(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    worker = await start_worker(slots=1)
    row = await store(database, request(chess.STARTING_FEN, time_limit=LONG))
    await wait_running(database, row.id, attempt=1)
    await cancellation.request_cancel(database, row.id)
    loop = asyncio.get_running_loop()
    asked = loop.time()
    canceled = await wait_terminal(database, row, timeout=10)
    assert canceled.status is AnalysisStatus.CANCELED
    assert loop.time() - asked < 1.5, "the NOTIFY, not the heartbeat, stopped it"
    # The same engine goes on with the next analysis.
    after = await store(database, request(depth=4))
    assert (await wait_terminal(database, after)).status is AnalysisStatus.DONE
    assert worker.slots[0].engine.running


@pytest.mark.parametrize(
    ("binary", "message"),
    [
        ("/bin/false", "cannot start engine /bin/false"),
        ("/nonexistent/stockfish", "STOCKFISH_PATH"),
    ],
)
def test_a_broken_or_missing_engine_stops_the_worker_at_start(
    binary: str, message: str, database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "STOCKFISH_PATH": binary, "DATABASE_URL": database_url}
    completed = subprocess.run(
        [sys.executable, "-m", "engine"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
