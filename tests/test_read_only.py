"""The database turned read-only under a running system, then writable again.

A failover can leave every connection on a server that refuses writes for a while
(`default_transaction_read_only`, or a standby not yet promoted): SQLSTATE 25006,
which `db.errors` counts as a reason of the moment. While it lasts, the workers can
neither claim, write results, renew leases nor sweep; the API refuses submissions with
SERVICE_UNAVAILABLE. The window is held open for longer than a lease, so every lease
lapses; once writes are allowed again the workers renew them and write the results they
kept before any sweep takes a row back. So: no process exits, every accepted analysis
ends DONE having run once, each completion is announced once, and every subscriber is
told once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import chess
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import AnalysisStatus
from db.settings import asyncpg_dsn
from tests.graphql_client import (
    COMPLETED,
    SUBMIT,
    authorization,
    key_for,
    submit,
    subscribe_transport_ws,
)
from tests.processes import Completions, Process, Processes
from tests.test_faults import (
    FAST_RECOVERY,
    LEASE,
    count_at_end,
    http_url,
    wait_for_row,
    ws_url,
)

READ_ONLY_SECONDS = float(LEASE) + 2
"""How long the database refuses writes: longer than a lease, so every lease lapses."""
PACE_SECONDS = 0.1
"""The stream submits one analysis this often (a rate, not a synchronisation)."""
SUBSCRIBE_EVERY = 4
"""One accepted analysis in this many gets a subscriber waiting for it."""
UNDER_TEST = "^chess-analysis-(api|worker)"
"""The `application_name`s of the processes under test; the test's own connections (the
completion counter's LISTEN) are left alone, so that no completion goes uncounted."""


@dataclass
class Stream:
    """Submits a short analysis every `PACE_SECONDS` until stopped, alternating a depth
    limit (a few milliseconds of engine time) and a time limit; keeps what was accepted,
    how each refusal was answered, and a subscriber for some of the accepted."""

    port: int
    accepted: list[str] = field(default_factory=list)
    refusals: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(HTTP status, first GraphQL error) of each submission that was refused."""
    subscribers: list[asyncio.Task[list[dict[str, Any]]]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        limits: list[dict[str, Any]] = [{"depthLimit": 8}, {"timeLimit": 0.2}]
        headers = authorization(key_for(http_url(self.port)))
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            number = 0
            while not self.stop.is_set():
                fields = {"fen": chess.STARTING_FEN, "fresh": True, **limits[number % 2]}
                number += 1
                response = await client.post(
                    http_url(self.port), json={"query": SUBMIT, "variables": {"input": fields}}
                )
                body = response.json()
                if "errors" in body:
                    self.refusals.append((response.status_code, body["errors"][0]))
                else:
                    self.add(body["data"]["submitAnalysis"]["id"])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), PACE_SECONDS)

    def add(self, analysis_id: str, *, subscribe: bool = False) -> None:
        if subscribe or len(self.accepted) % SUBSCRIBE_EVERY == 0:
            self.subscribers.append(
                asyncio.create_task(
                    subscribe_transport_ws(
                        ws_url(self.port), COMPLETED, {"id": analysis_id}, timeout=60
                    )
                )
            )
        self.accepted.append(analysis_id)


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Wait (polling, at most `timeout` seconds) until `condition()` is true."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def count_done(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        done = await connection.scalar(text("SELECT count(*) FROM analyses WHERE status = 'done'"))
    return int(done or 0)


async def set_read_only(server_url: str, database_url: str, read_only: bool) -> int:
    """Make the test's database refuse writes (or allow them again), then end the
    sessions of the processes under test, so that each reconnects and takes the new
    default; how many sessions were ended."""
    name = make_url(database_url).database
    change = (
        "SET default_transaction_read_only = on"
        if read_only
        else "RESET default_transaction_read_only"
    )
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f'ALTER DATABASE "{name}" {change}')
        ended: int = await connection.fetchval(
            """
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name ~ $2
            """,
            name,
            UNDER_TEST,
        )
    finally:
        await connection.close()
    return ended


@pytest.mark.slow
async def test_read_only_database_during_claims_and_finishes(
    processes: Processes,
    database: AsyncEngine,
    completions: Completions,
    server_url: str,
    database_url: str,
) -> None:
    api, port = await processes.api(API_LISTEN_PING_INTERVAL="0.5")
    workers = [await processes.worker(slots=2, **FAST_RECOVERY) for _ in range(2)]
    stream = Stream(port)
    producing = asyncio.create_task(stream.run())

    # Claims and finishes under way: a few done, the stream going on, and one analysis
    # long enough to be running when the switch comes and to finish while it lasts.
    await until(lambda: len(stream.accepted) >= 15, timeout=30)
    await asyncio.wait_for(_at_least_done(database, 5), 30)
    long = await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=1.5)
    stream.add(long["id"], subscribe=True)
    await wait_for_row(database, long["id"], AnalysisStatus.RUNNING, timeout=10)

    switched_at = time.monotonic()
    assert await set_read_only(server_url, database_url, read_only=True) > 0
    for worker in workers:
        await worker.wait_for_line("in a read-only transaction", timeout=10)
    async with httpx.AsyncClient(
        timeout=10, headers={"authorization": f"Bearer {processes.key}"}
    ) as client:
        probe = await client.post(
            http_url(port),
            json={"query": SUBMIT, "variables": {"input": {"fen": chess.STARTING_FEN}}},
        )
        ready = await client.get(f"http://127.0.0.1:{port}/readyz")
    assert probe.status_code == 200, probe.text
    assert probe.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", probe.text
    assert (ready.status_code, ready.json()["database"]) == (503, "read-only")
    # The window is held open on purpose, past every lease.
    await asyncio.sleep(READ_ONLY_SECONDS - (time.monotonic() - switched_at))
    held = await _row(database, long["id"])
    assert held["status"] == "running", "its result cannot have been written"
    assert held["lease_lapsed"], "leases cannot be renewed while the database is read-only"
    accepted_before = len(stream.accepted)

    assert await set_read_only(server_url, database_url, read_only=False) > 0
    restored_at = time.monotonic()
    stream.add(
        (await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, depthLimit=8))["id"]
    )
    await until(lambda: len(stream.accepted) >= accepted_before + 15, timeout=30)
    stream.stop.set()
    await asyncio.wait_for(producing, 15)

    await asyncio.wait_for(
        asyncio.gather(
            *(
                wait_for_row(database, analysis_id, AnalysisStatus.DONE, 60)
                for analysis_id in stream.accepted
            )
        ),
        60,
    )
    caught_up = time.monotonic() - restored_at
    results = await asyncio.wait_for(asyncio.gather(*stream.subscribers), 60)
    for messages in results:
        assert [message["type"] for message in messages] == ["next", "complete"], messages
        assert messages[0]["payload"]["data"]["analysisCompleted"]["status"] == "DONE"

    assert all(process.process.returncode is None for process in [api, *workers]), _outputs(
        [api, *workers]
    )
    refusal_codes = {error.get("extensions", {}).get("code") for _, error in stream.refusals}
    if not refusal_codes <= {"SERVICE_UNAVAILABLE"}:
        print(_outputs([api]))  # noqa: T201 (in full: an assertion message is cut short)
    assert refusal_codes <= {"SERVICE_UNAVAILABLE"}, stream.refusals
    assert {status for status, _ in stream.refusals} <= {200}, stream.refusals
    found = await count_at_end(
        database, completions, accepted=len(stream.accepted), report="read-only database"
    )
    assert found["done"] == len(stream.accepted)
    # Announced once each (the counter's LISTEN was never cut off, so none went unheard).
    assert [completions.counts[uuid.UUID(analysis_id)] for analysis_id in stream.accepted] == [
        1
    ] * len(stream.accepted)
    # No row was taken back and run again: the heartbeats renewed every lapsed lease, and
    # the workers wrote the results they held, before any sweep tried again.
    assert await _attempts(database) == {1}
    for worker in workers:
        assert "took back" not in worker.output, worker.output
    print(  # noqa: T201 (shown with -s, like the fault tests' recovery times)
        f"[read-only database] {READ_ONLY_SECONDS:.0f} s read-only (lease {LEASE} s);"
        f" {len(stream.refusals)} submissions refused; all {len(stream.accepted)} done"
        f" {caught_up:.1f} s after writes were allowed again"
    )


async def test_writes_back_just_before_a_sweep_cost_no_attempt(
    processes: Processes,
    database: AsyncEngine,
    server_url: str,
    database_url: str,
    completions: Completions,
) -> None:
    """A failover restarts no server, so only the sweeper's own grace protects the leases
    that lapsed meanwhile: writes come back a moment before the sweep's next try, and the
    sweep still waits until the heartbeats have renewed them."""
    recovery = {**FAST_RECOVERY, "ENGINE_SWEEP_INTERVAL": "0.05"}
    _, port = await processes.api()
    workers = [await processes.worker(slots=2, **recovery) for _ in range(2)]
    ids = [
        (await submit(http_url(port), fen=chess.STARTING_FEN, fresh=True, timeLimit=1.0))["id"]
        for _ in range(4)
    ]
    for analysis_id in ids:
        await wait_for_row(database, analysis_id, AnalysisStatus.RUNNING)
    await set_read_only(server_url, database_url, read_only=True)
    await workers[0].wait_for_line("sweep:", timeout=10)
    failed_at = time.monotonic()
    # Two leases after the sweep first failed, every lease has lapsed; writes come back
    # just before a sweeper that merely waited a lease after each failed try would sweep.
    await asyncio.sleep(2 * float(LEASE) - 0.15)
    assert time.monotonic() - failed_at < 2 * float(LEASE)
    await set_read_only(server_url, database_url, read_only=False)
    for analysis_id in ids:
        await wait_for_row(database, analysis_id, AnalysisStatus.DONE, timeout=30)
    assert await _attempts(database) == {1}
    for worker in workers:
        assert "took back" not in worker.output, worker.output
        assert "result dropped" not in worker.output, worker.output
    await count_at_end(database, completions, accepted=4, report="writes back before a sweep")


async def _at_least_done(database: AsyncEngine, count: int) -> None:
    while await count_done(database) < count:
        await asyncio.sleep(0.02)


async def _row(database: AsyncEngine, analysis_id: str) -> dict[str, Any]:
    async with database.connect() as connection:
        row = await connection.execute(
            text(
                "SELECT status, lease_expires_at < now() AS lease_lapsed"
                " FROM analyses WHERE id = :id"
            ),
            {"id": uuid.UUID(analysis_id)},
        )
        return dict(row.one()._mapping)


async def _attempts(database: AsyncEngine) -> set[int]:
    async with database.connect() as connection:
        rows = await connection.execute(text("SELECT DISTINCT attempts FROM analyses"))
        return {row.attempts for row in rows}


def _outputs(children: list[Process]) -> str:
    return "\n\n".join(f"{child.name}:\n{child.output}" for child in children)
