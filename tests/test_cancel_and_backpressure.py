"""cancelAnalysis and QUEUE_FULL through the API."""

from __future__ import annotations

import asyncio

import chess
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db import submissions
from db.models import Analysis
from tests.conftest import REFERENCE_FEN, ApiFactory, Server, WorkerFactory
from tests.graphql_client import COMPLETED, SUBMIT, post, submit, subscribe_transport_ws

CANCEL = "mutation Cancel($id: ID!) { cancelAnalysis(id: $id) { id status finishedAt } }"


async def cancel(server: Server, analysis_id: str) -> dict[str, object]:
    body = await post(server.http_url, CANCEL, {"id": analysis_id})
    assert "errors" not in body, body
    result: dict[str, object] = body["data"]["cancelAnalysis"]
    return result


async def test_cancel_a_queued_analysis_at_once(api: Server) -> None:
    submitted = await submit(api.http_url, fen=REFERENCE_FEN)
    subscriber = asyncio.create_task(
        subscribe_transport_ws(api.ws_url, COMPLETED, {"id": submitted["id"]})
    )
    canceled = await cancel(api, submitted["id"])
    assert canceled["status"] == "CANCELED"
    assert canceled["finishedAt"] is not None
    messages = await asyncio.wait_for(subscriber, 10)
    assert messages[0]["payload"]["data"]["analysisCompleted"]["status"] == "CANCELED"


async def test_cancel_a_running_analysis_stops_it(
    start_api: ApiFactory, database: AsyncEngine, start_worker: WorkerFactory
) -> None:
    # How long stopping takes is a benchmark's business; here, that it happens (a
    # generous cancel wait, so that a loaded machine does not turn it into RUNNING).
    api = await start_api(cancel_wait=15)
    await start_worker(slots=1)
    submitted = await submit(api.http_url, fen=chess.STARTING_FEN, timeLimit=30.0)
    subscriber = asyncio.create_task(
        subscribe_transport_ws(api.ws_url, COMPLETED, {"id": submitted["id"]})
    )
    async with asyncio.timeout(10):
        while (row := await submissions.get(database, submitted["id"])) is None or (
            row.status.value != "running"
        ):
            await asyncio.sleep(0.02)
    canceled = await cancel(api, submitted["id"])
    assert canceled["status"] == "CANCELED", "the worker stopped it within the cancel wait"
    messages = await asyncio.wait_for(subscriber, 10)
    assert [m["type"] for m in messages] == ["next", "complete"]
    assert messages[0]["payload"]["data"]["analysisCompleted"]["status"] == "CANCELED"


async def test_cancel_a_finished_analysis_returns_it_unchanged(api: Server) -> None:
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    submitted = await submit(api.http_url, fen=mated)
    assert (await cancel(api, submitted["id"]))["status"] == "DONE"


@pytest.mark.parametrize(
    ("analysis_id", "code"),
    [("00000000-0000-0000-0000-000000000000", "NOT_FOUND"), ("x", "BAD_USER_INPUT")],
)
async def test_cancel_unknown_or_malformed_id(api: Server, analysis_id: str, code: str) -> None:
    body = await post(api.http_url, CANCEL, {"id": analysis_id})
    [error] = body["errors"]
    assert error["extensions"]["code"] == code


async def test_a_full_queue_refuses_submissions_and_stores_nothing(
    start_api: ApiFactory, database: AsyncEngine
) -> None:
    server = await start_api(max_queued=2, queue_full_retry_after=7)
    for _ in range(2):
        await submit(server.http_url, fen=REFERENCE_FEN, fresh=True)
    body = await post(server.http_url, SUBMIT, {"input": {"fen": REFERENCE_FEN, "fresh": True}})
    [error] = body["errors"]
    assert error["extensions"] == {"code": "QUEUE_FULL", "retryAfter": 7.0}
    assert "queue is full" in error["message"]
    async with database.connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(Analysis))).scalar()
    assert count == 2
    # Positions finished at submit never wait in the queue, so they are still accepted.
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    assert (await submit(server.http_url, fen=mated))["status"] == "DONE"
