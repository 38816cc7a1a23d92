"""Faults with real processes: workers and APIs as subprocesses, real PostgreSQL, real
Stockfish. Each test ends by counting: every accepted analysis terminal, none completed
twice, and every subscriber told exactly once.

Recovery times are printed (run with `-s` to see them).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import chess
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from db import submissions
from db.models import AnalysisStatus
from db.settings import DatabaseSettings
from tests.graphql_client import (
    COMPLETED,
    SUBMIT,
    authorization,
    post,
    submit,
    subscribe_transport_ws,
)
from tests.processes import Completions, Process, Processes
from tooling import embedded_postgres

# Shorter than the defaults (8 s lease, 1 s sweep, 0.5 s first retry) to keep the suite
# quick; FAULT_TEST_DEFAULTS=1 runs the fault tests with the shipped defaults instead.
LEASE = "8" if os.environ.get("FAULT_TEST_DEFAULTS") else "4"
FAST_RECOVERY = (
    {}
    if os.environ.get("FAULT_TEST_DEFAULTS")
    else {
        "ENGINE_LEASE_SECONDS": LEASE,
        "ENGINE_SWEEP_INTERVAL": "0.5",
        "ENGINE_RETRY_BASE_DELAY": "0.25",
    }
)


OUTAGE_SECONDS = 25.0
"""How long PostgreSQL stays down in the outage test: several leases."""


async def statuses(database: AsyncEngine) -> Counter[str]:
    async with database.connect() as connection:
        rows = await connection.execute(text("SELECT status FROM analyses"))
        return Counter(str(row.status) for row in rows)


async def wait_for_row(
    database: AsyncEngine, analysis_id: str, status: AnalysisStatus, timeout: float = 30
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            row = await submissions.get(database, uuid.UUID(analysis_id))
            if row is not None and row.status is status:
                return
            await asyncio.sleep(0.02)


async def wait_for_running(database: AsyncEngine, count: int, timeout: float = 30) -> None:
    """Wait until at least `count` analyses run."""
    async with asyncio.timeout(timeout):
        while (await statuses(database))["running"] < count:
            await asyncio.sleep(0.02)


def ids(analyses: list[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(analysis["id"]) for analysis in analyses]


async def cancel(port: int, analysis_id: str) -> str:
    """Cancel an analysis through the API; its status afterwards."""
    body = await post(
        http_url(port),
        "mutation($id: ID!) { cancelAnalysis(id: $id) { status } }",
        {"id": analysis_id},
    )
    return str(body["data"]["cancelAnalysis"]["status"])


async def count_at_end(
    database: AsyncEngine, completions: Completions, accepted: int, report: str
) -> Counter[str]:
    """Assert the end state every fault test shares, and print it."""
    await completions.listener.close()  # deliver what is pending, then stop counting
    found = await statuses(database)
    terminal = sum(found[status] for status in ("done", "failed", "canceled"))
    duplicated = sum(1 for count in completions.counts.values() if count > 1)
    counts = f"accepted={accepted} terminal={terminal} duplicated={duplicated}"
    print(f"\n[{report}] {counts} {dict(found)}")
    assert sum(found.values()) == accepted
    assert terminal == accepted, found
    assert duplicated == 0, completions.counts
    return found


def http_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/graphql"


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/graphql"


async def watched_analysis(
    processes: Processes, database: AsyncEngine, time_limit: float
) -> tuple[Process, dict[str, Any], asyncio.Task[list[dict[str, Any]]]]:
    """An API and a worker; one analysis running on it, with a subscriber waiting."""
    _, port = await processes.api()
    worker = await processes.worker(**FAST_RECOVERY)
    submitted = await submit(
        http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=time_limit
    )
    subscriber = asyncio.create_task(
        subscribe_transport_ws(ws_url(port), COMPLETED, {"id": submitted["id"]}, timeout=60)
    )
    await wait_for_row(database, submitted["id"], AnalysisStatus.RUNNING)
    return worker, submitted, subscriber


async def test_kill_9_a_worker_mid_analysis(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    doomed, submitted, subscriber = await watched_analysis(processes, database, 3.0)
    survivor = await processes.worker(**FAST_RECOVERY)
    [engine_pid] = doomed.children()
    killed_at = time.time()
    doomed.signal(signal.SIGKILL)
    await doomed.wait(10)

    messages = await asyncio.wait_for(subscriber, 60)
    assert [message["type"] for message in messages] == ["next", "complete"]
    event = messages[0]["payload"]["data"]["analysisCompleted"]
    assert event["status"] == "DONE"
    row = await submissions.get(database, uuid.UUID(submitted["id"]))
    assert row is not None and row.started_at is not None
    assert row.attempts == 2
    picked_up = row.started_at.timestamp() - killed_at
    print(f"\n[kill -9 worker] lease={LEASE}s: taken over {picked_up:.2f}s after the kill")
    # At most one lease (the kill can come right after a renewal), one sweep interval
    # and the first retry's backoff.
    assert picked_up < float(LEASE) + 2.5
    assert survivor.process.returncode is None
    # The dead worker's Stockfish saw its stdin close and exited.
    async with asyncio.timeout(10):
        while Path(f"/proc/{engine_pid}").exists():
            await asyncio.sleep(0.05)
    await count_at_end(database, completions, accepted=1, report="kill -9 worker")


async def test_kill_9_a_worker_running_a_shared_search(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    """Five requests share one run; its worker dies: the run is taken over, runs once
    more, and each of the five is told once, DONE."""
    _, port = await processes.api()
    doomed = await processes.worker(**FAST_RECOVERY)
    request = {"fen": chess.STARTING_FEN, "timeLimit": 3.0}
    submitted = [await submit(http_url(port), **request) for _ in range(5)]
    subscribers = [
        asyncio.create_task(
            subscribe_transport_ws(ws_url(port), COMPLETED, {"id": s["id"]}, timeout=60)
        )
        for s in submitted
    ]
    for analysis in submitted:
        await wait_for_row(database, analysis["id"], AnalysisStatus.RUNNING)
    survivor = await processes.worker(**FAST_RECOVERY)
    doomed.signal(signal.SIGKILL)
    await doomed.wait(10)
    for subscriber in subscribers:
        messages = await asyncio.wait_for(subscriber, 60)
        assert [message["type"] for message in messages] == ["next", "complete"]
        assert messages[0]["payload"]["data"]["analysisCompleted"]["status"] == "DONE"
    rows = [await submissions.get(database, analysis_id) for analysis_id in ids(submitted)]
    carriers = [row for row in rows if row is not None and not row.follows]
    assert len(carriers) == 1 and carriers[0].attempts == 2, "one run, taken over once"
    assert len({str(row.result) for row in rows if row is not None}) == 1
    assert survivor.process.returncode is None
    await count_at_end(database, completions, accepted=5, report="kill -9 shared run")


async def test_kill_the_engine_mid_analysis(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    worker, submitted, subscriber = await watched_analysis(processes, database, 1.0)
    [engine_pid] = worker.children()
    killed_at = time.monotonic()
    os.kill(engine_pid, signal.SIGKILL)
    messages = await asyncio.wait_for(subscriber, 60)
    recovered = time.monotonic() - killed_at
    print(f"\n[kill Stockfish] finished {recovered:.2f}s after the kill (1 s analysis)")
    assert messages[0]["payload"]["data"]["analysisCompleted"]["status"] == "DONE", messages
    await worker.wait_for_line("replacing the engine")
    assert worker.children() and worker.children() != [engine_pid]
    row = await submissions.get(database, uuid.UUID(submitted["id"]))
    assert row is not None and row.attempts == 2
    await count_at_end(database, completions, accepted=1, report="kill Stockfish")


@pytest.mark.skipif(
    bool(DatabaseSettings().url), reason="restarts the embedded server; DATABASE_URL is set"
)
@pytest.mark.timeout(240)
async def test_an_outage_longer_than_a_lease_costs_no_attempt(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    api, port = await processes.api(API_LISTEN_PING_INTERVAL="0.5")
    workers = [await processes.worker(slots=2, **FAST_RECOVERY) for _ in range(2)]
    submitted = [
        await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=1.5)
        for _ in range(10)
    ]
    subscribers = [
        asyncio.create_task(
            subscribe_transport_ws(ws_url(port), COMPLETED, {"id": s["id"]}, timeout=180)
        )
        for s in submitted
    ]
    await wait_for_running(database, 4)

    data_dir = DatabaseSettings().data_dir
    down_at = time.monotonic()
    embedded_postgres.stop(data_dir, mode="fast")
    # While the database is down, requests fail at once with a clear code.
    asked = time.monotonic()
    body = await post(http_url(port), SUBMIT, {"input": {"fen": chess.STARTING_FEN}})
    answered = time.monotonic() - asked
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert answered < 5
    async with httpx.AsyncClient(timeout=10) as client:
        not_ready = await client.get(f"http://127.0.0.1:{port}/readyz")
        assert not_ready.status_code == 503
        assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    # Longer than several leases: the running analyses finish meanwhile, with nowhere
    # to write their results, and every lease lapses.
    await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - down_at))
    assert all(process.process.returncode is None for process in [api, *workers])
    embedded_postgres.ensure_running(data_dir)
    up_at = time.monotonic()

    results = await asyncio.wait_for(asyncio.gather(*subscribers), 120)
    all_told = time.monotonic()
    for messages in results:
        assert [message["type"] for message in messages] == ["next", "complete"], messages
        assert messages[0]["payload"].get("data"), messages
        assert messages[0]["payload"]["data"]["analysisCompleted"]["status"] == "DONE"
    await api.wait_for_line("notification connection restored")
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    print(
        f"\n[outage] PostgreSQL down {up_at - down_at:.1f}s; SERVICE_UNAVAILABLE in"
        f" {answered * 1000:.0f} ms; every subscriber told {all_told - up_at:.1f}s after restart"
    )
    assert all(process.process.returncode is None for process in [api, *workers])
    attempts = {row.attempts for row in await submissions.get_many(database, ids(submitted))}
    assert attempts == {1}, "no attempt spent on an analysis whose worker stayed alive"
    # The API still serves, and the workers still work.
    submitted.append(
        await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=0.1)
    )
    await asyncio.wait_for(
        asyncio.gather(*(wait_for_row(database, s["id"], AnalysisStatus.DONE) for s in submitted)),
        60,
    )
    found = await count_at_end(database, completions, accepted=11, report="outage")
    assert found["done"] == 11


async def test_a_heartbeat_that_keeps_failing_stops_the_worker_with_status_1(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    # Every lease renewal (running → running with a new lease) fails: a bug as far as
    # the worker can tell (SQLSTATE P0001), however often its heartbeat starts again.
    async with database.begin() as connection:
        for statement in (
            """
            CREATE FUNCTION refuse_renewals() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'renewals refused'; END $$
            """,
            """
            CREATE TRIGGER refuse_renewals BEFORE UPDATE OF lease_expires_at ON analyses
            FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status = 'running')
            EXECUTE FUNCTION refuse_renewals()
            """,
        ):
            await connection.execute(text(statement))
    _, port = await processes.api()
    worker = await processes.worker(**FAST_RECOVERY, ENGINE_GRACE_SECONDS="30")
    submitted = await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=30.0)
    await wait_for_row(database, submitted["id"], AnalysisStatus.RUNNING)
    assert await worker.wait(30) == 1
    assert "heartbeat failed with an unexpected error (5 of 5 in a row)" in worker.output
    assert "renewals refused" in worker.output
    row = await submissions.get(database, uuid.UUID(submitted["id"]))
    assert row is not None
    # Put straight back without the grace (no lease was kept), its claim not counted.
    assert (row.status, row.attempts) == (AnalysisStatus.QUEUED, 0)
    async with database.begin() as connection:
        await connection.execute(text("DROP TRIGGER refuse_renewals ON analyses"))
    await processes.worker(**FAST_RECOVERY)
    await wait_for_row(database, submitted["id"], AnalysisStatus.RUNNING)
    assert await cancel(port, submitted["id"]) == "CANCELED"
    await count_at_end(database, completions, accepted=1, report="heartbeat keeps failing")


async def test_sigterm_a_worker_with_analyses_running(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    _, port = await processes.api()
    worker = await processes.worker(slots=2, ENGINE_GRACE_SECONDS="4")
    short = await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=1.5)
    long = await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=30.0)
    for analysis in (short, long):
        await wait_for_row(database, analysis["id"], AnalysisStatus.RUNNING)
    asked = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0
    stopped = time.monotonic() - asked
    print(f"\n[SIGTERM worker] exited 0 after {stopped:.1f}s (grace 4 s)")
    assert stopped < 4 + 5
    finished = await submissions.get(database, uuid.UUID(short["id"]))
    returned = await submissions.get(database, uuid.UUID(long["id"]))
    assert finished is not None and finished.status is AnalysisStatus.DONE
    assert returned is not None
    assert (returned.status, returned.attempts, returned.worker_id) == (
        AnalysisStatus.QUEUED,
        0,
        None,
    ), "put back at once, not left to lease expiry"
    # Another worker takes it over straight away.
    await processes.worker()
    await wait_for_row(database, long["id"], AnalysisStatus.RUNNING, timeout=10)
    assert await cancel(port, long["id"]) == "CANCELED"
    await count_at_end(database, completions, accepted=2, report="SIGTERM worker")


async def test_sigterm_the_api_closes_websockets_properly(
    processes: Processes,
) -> None:
    api, port = await processes.api()
    submitted = await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True)
    async with connect(ws_url(port), subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": authorization(processes.key)}
        await socket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "connection_ack"
        payload: dict[str, Any] = {"query": COMPLETED, "variables": {"id": submitted["id"]}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        api.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(socket.recv(), 10)
        print(f"\n[SIGTERM API] WebSocket closed with code {socket.close_code}")
        assert socket.close_code in (1001, 1012)
    # uvicorn re-raises the signal once it has shut down: the exit status says SIGTERM,
    # which process managers count as a clean stop.
    assert await api.wait(15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in api.output
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(http_url(port))
