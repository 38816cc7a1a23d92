"""Games survive what analyses survive: a worker killed with -9 in the middle of a game,
a database restarted in the middle of one. The game ends DONE, every position once,
its subscriber told of the end once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.settings import DatabaseSettings
from tests.graphql_client import post, subscribe_transport_ws
from tests.processes import Completions, Processes
from tests.test_faults import FAST_RECOVERY, count_at_end, http_url, ws_url
from tests.test_games import FOLLOW, ITALIAN, SUBMIT_GAME
from tooling import embedded_postgres

DEPTH = 16
"""Deep enough that a game of 17 positions takes a few seconds on two slots."""


async def submit_game(port: int) -> dict[str, Any]:
    body = await post(http_url(port), SUBMIT_GAME, {"input": {"pgn": ITALIAN, "depthLimit": DEPTH}})
    assert "errors" not in body, body
    game: dict[str, Any] = body["data"]["submitGameAnalysis"]
    return game


async def positions_done(database: AsyncEngine, game_id: str) -> int:
    async with database.connect() as connection:
        found = await connection.execute(
            text("SELECT count(*) FROM analyses WHERE game_id = :id AND status = 'done'"),
            {"id": uuid.UUID(game_id)},
        )
        return int(found.scalar_one())


async def wait_for_done(database: AsyncEngine, game_id: str, count: int) -> None:
    async with asyncio.timeout(60):
        while await positions_done(database, game_id) < count:
            await asyncio.sleep(0.05)


def the_end(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The subscription's events: each a game; exactly one DONE, the last; then complete."""
    assert messages[-1]["type"] == "complete", messages[-1]
    events = [message["payload"]["data"]["gameAnalysisProgress"] for message in messages[:-1]]
    statuses = [event["status"] for event in events]
    assert statuses.count("DONE") == 1 and statuses[-1] == "DONE", statuses
    last: dict[str, Any] = events[-1]
    assert last["progress"] == {"done": 17, "total": 17}
    assert last["white"] is not None and last["black"] is not None
    return last


async def test_kill_9_a_worker_in_the_middle_of_a_game(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    _, port = await processes.api()
    doomed = await processes.worker(slots=2, **FAST_RECOVERY)
    game = await submit_game(port)
    follower = asyncio.create_task(
        subscribe_transport_ws(ws_url(port), FOLLOW, {"id": game["id"]}, timeout=120)
    )
    await wait_for_done(database, game["id"], 3)
    await processes.worker(slots=2, **FAST_RECOVERY)
    doomed.signal(signal.SIGKILL)
    await doomed.wait(10)
    the_end(await asyncio.wait_for(follower, 120))
    await count_at_end(database, completions, accepted=17, report="kill -9 mid-game")


@pytest.mark.skipif(
    bool(DatabaseSettings().url), reason="restarts the embedded server; DATABASE_URL is set"
)
@pytest.mark.timeout(180)
async def test_a_database_restart_in_the_middle_of_a_game(
    processes: Processes, database: AsyncEngine, completions: Completions
) -> None:
    api, port = await processes.api(API_LISTEN_PING_INTERVAL="0.5")
    await processes.worker(slots=2, **FAST_RECOVERY)
    game = await submit_game(port)
    follower = asyncio.create_task(
        subscribe_transport_ws(ws_url(port), FOLLOW, {"id": game["id"]}, timeout=150)
    )
    await wait_for_done(database, game["id"], 3)
    data_dir = DatabaseSettings().data_dir
    embedded_postgres.stop(data_dir, mode="fast")
    embedded_postgres.ensure_running(data_dir)
    the_end(await asyncio.wait_for(follower, 150))
    await api.wait_for_line("notification connection restored")
    await count_at_end(database, completions, accepted=17, report="database restart mid-game")
