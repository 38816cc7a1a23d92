"""Queue statistics, worker heartbeat rows, health checks, metrics and logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import asyncpg
import httpx
from prometheus_client import generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import claims, workers
from db.models import ResultLine
from engine.worker import Worker
from runtime import logs
from tests.conftest import REFERENCE_FEN, Server, WorkerFactory
from tests.graphql_client import COMPLETED, SUBMIT, post, submit, subscribe_transport_ws
from tests.rows import store, wait_terminal

STATS = """
{ queueStats { queued running done failed canceled oldestQueuedAgeSeconds
  finishedLastMinute workersAlive runningWithoutWorker
  workers { id host pid slots running engine listening startedAt lastSeenAt } } }
"""
LINE = ResultLine(rank=1, centipawn_score=0, mate_score=None, pv=("e2e4",), pv_san=("e4",), depth=1)


async def stats(server: Server) -> dict[str, Any]:
    body = await post(server.http_url, STATS, key=server.admin_key)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["queueStats"]
    return result


async def test_queue_stats_with_queued_running_and_finished_work(
    api: Server, database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    empty = await stats(api)
    assert (empty["queued"], empty["oldestQueuedAgeSeconds"], empty["workers"]) == (0, None, [])
    for _ in range(4):
        await store(database)
    me = workers.WorkerInfo(id="worker-a", host="h1", pid=42, slots=2, engine="Stockfish 15.1")
    await workers.register(database, me, listening=True, ttl=30)
    first = await claims.claim_next(pool, "worker-a", 15)
    second = await claims.claim_next(pool, "worker-a", 15)
    lost = await claims.claim_next(pool, "worker-gone", 15)
    assert first and second and lost
    assert await claims.finish(pool, first, "worker-a", [LINE], "Stockfish 15.1")
    found = await stats(api)
    assert (found["queued"], found["running"], found["done"]) == (1, 2, 1)
    assert (found["failed"], found["canceled"], found["finishedLastMinute"]) == (0, 0, 1)
    assert found["oldestQueuedAgeSeconds"] >= 0
    assert found["workersAlive"] == 1
    [worker] = found["workers"]
    assert (worker["id"], worker["host"], worker["pid"], worker["slots"], worker["running"]) == (
        "worker-a",
        "h1",
        42,
        2,
        1,
    )
    assert worker["listening"] is True
    assert found["runningWithoutWorker"] == 1


async def test_a_worker_keeps_a_heartbeat_row_while_it_runs(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    worker = await start_worker(slots=1)
    async with database.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT * FROM workers WHERE id = :id"), {"id": worker.id}
            )
        ).one()
    assert (row.slots, row.listening) == (1, True)
    assert row.engine.startswith("Stockfish")
    assert row.expires_at > row.last_seen_at


async def test_expired_worker_rows_are_removed(database: AsyncEngine) -> None:
    gone = workers.WorkerInfo(id="gone", host="h", pid=1, slots=1, engine="x")
    alive = workers.WorkerInfo(id="alive", host="h", pid=2, slots=1, engine="x")
    await workers.register(database, gone, listening=True, ttl=-1)
    await workers.register(database, alive, listening=True, ttl=60)
    assert await workers.remove_expired(database) == ["gone"]
    assert await workers.remove_expired(database) == []


async def test_health_and_readiness(api: Server) -> None:
    base = api.http_url.removesuffix("/graphql")
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(base + "/healthz")).json() == {"status": "ok"}
        ready = await client.get(base + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "listener": "ok"}


async def test_metrics_count_operations_errors_and_subscribers(api: Server) -> None:
    submitted = await submit(api.http_url, fen=REFERENCE_FEN)
    await post(api.http_url, SUBMIT, {"input": {"fen": "garbage"}})
    await post(api.http_url, "{ madeUpField }")
    subscriber = asyncio.create_task(
        subscribe_transport_ws(api.ws_url, COMPLETED, {"id": submitted["id"]})
    )
    async with asyncio.timeout(10):
        while api.services.hub.waiting != 1:
            await asyncio.sleep(0.01)
    async with httpx.AsyncClient(timeout=10, headers=api.admin_headers) as client:
        page = (await client.get(api.http_url.removesuffix("/graphql") + "/metrics")).text
    subscriber.cancel()
    lines = set(page.splitlines())
    assert 'graphql_operations_total{field="submitAnalysis",type="mutation"} 2.0' in lines
    errors = 'graphql_operation_errors_total{code="BAD_USER_INPUT",field="submitAnalysis"'
    assert errors + ',type="mutation"} 1.0' in lines
    assert 'graphql_operations_total{field="unknown",type="query"} 1.0' in lines
    assert "websocket_connections 1.0" in lines
    assert "graphql_active_subscriptions 1.0" in lines
    assert "analysis_submit_duration_seconds_count 1.0" in lines, "stored submissions only"


async def test_worker_log_lines_carry_the_analysis_id(
    database: AsyncEngine, start_worker: WorkerFactory, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="engine")
    await start_worker(slots=1)
    row = await store(database)
    await wait_terminal(database, row)
    about = [r for r in caplog.records if r.name.startswith("engine.") and r.analysis_id]
    assert {r.analysis_id for r in about} == {str(row.id)}
    assert any(r.getMessage() == "done" for r in about)


def test_json_log_lines_carry_ids_and_no_body() -> None:
    logs.add_ids_to_records()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.propagate = False
    token = logs.request_id.set("req-1")
    try:
        logger.warning("something %s", "happened")
    finally:
        logs.request_id.reset(token)
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "something happened"
    assert entry["request_id"] == "req-1"
    assert entry["level"] == "WARNING"
    assert "analysis_id" not in entry


async def test_worker_metrics_count_its_work(
    database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    worker: Worker = await start_worker(slots=1, metrics_port=None)
    row = await store(database)
    await wait_terminal(database, row)
    # The result is written behind the slot; its counters follow the write at once.
    async with asyncio.timeout(5):
        while worker.metrics.finished._value.get() < 1:
            await asyncio.sleep(0.01)
    page = generate_latest(worker.metrics.registry).decode()
    lines = set(page.splitlines())
    assert "worker_jobs_claimed_total 1.0" in lines
    assert "worker_jobs_finished_total 1.0" in lines
    assert "worker_analysis_duration_seconds_count 1.0" in lines
    assert "worker_engine_restarts_total 0.0" in lines
    assert "worker_busy_slots 0.0" in lines
