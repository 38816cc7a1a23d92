"""Fixtures on real parts: a PostgreSQL server, a database per test, real Stockfish.

The server is `DATABASE_URL` when set, else the embedded one (started here and
stopped at the end if this session started it). Migrations run once into a template
database; each test gets a fresh copy of it, which takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.settings import ApiSettings
from db import embedded, migrations
from db.session import create_engine
from db.settings import DatabaseSettings, asyncpg_dsn, with_database
from engine.settings import EngineSettings, find_stockfish
from engine.worker import Worker

REFERENCE_FEN = "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1"
"""Black mates in two: 1… Rc1+ 2. Re1 Rxe1#."""

pytest_plugins: list[str] = []


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of the server's maintenance database."""
    settings = DatabaseSettings()
    if settings.url:
        yield settings.url
        return
    server = embedded.ensure_running(settings.data_dir)
    yield server.url
    if server.started:
        embedded.stop(settings.data_dir)


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
async def template_database(server_url: str) -> AsyncIterator[str]:
    """The name of a database migrated to head, to copy for each test."""
    name = f"chess_template_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(migrations.upgrade, with_database(server_url, name))
        yield name
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, template: str | None) -> AsyncIterator[str]:
    """A new database (a copy of `template`, or empty) for one test; dropped after it."""
    name = f"chess_test_{uuid.uuid4().hex[:12]}"
    source = f' TEMPLATE "{template}"' if template else ""
    await _admin(server_url, f'CREATE DATABASE "{name}"{source}')
    try:
        yield with_database(server_url, name)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(server_url: str, template_database: str) -> AsyncIterator[str]:
    """The URL of this test's own migrated database."""
    async with fresh_database(server_url, template_database) as url:
        yield url


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """The URL of this test's own database, with no tables (for migration tests)."""
    async with fresh_database(server_url, None) as url:
        yield url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A pooled engine on this test's database."""
    engine = create_engine(DatabaseSettings(), database_url, application_name="tests")
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def stockfish() -> Path:
    """The real engine binary; missing it fails the run in CI and skips elsewhere."""
    path = find_stockfish(os.environ.get("STOCKFISH_PATH"))
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Stockfish is required in CI (apt-get install stockfish)")
        pytest.skip("Stockfish is not installed")
    return path


@pytest.fixture
async def worker(
    database: AsyncEngine, database_url: str, stockfish: Path
) -> AsyncIterator[Worker]:
    """A worker with two slots, running in this event loop until the test ends."""
    settings = EngineSettings(slots=2, poll_interval=300.0)
    running = Worker(settings, database, database_url, stockfish)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    ready = asyncio.create_task(running.ready.wait())
    await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    assert running.ready.is_set(), "worker did not start in 30 s"
    yield running
    stop.set()
    await asyncio.wait_for(task, 30)


class Server:
    """A real uvicorn serving the API on a free loopback port."""

    def __init__(self, server: uvicorn.Server) -> None:
        self._server = server

    @property
    def port(self) -> int:
        socket = self._server.servers[0].sockets[0]
        return int(socket.getsockname()[1])

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def app(self) -> object:
        return self._server.config.app


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Server]:
    """The API on this test's database, served over real HTTP and WebSocket."""
    app = create_app(ApiSettings(), DatabaseSettings(), database_url)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    yield Server(server)
    server.should_exit = True
    await asyncio.wait_for(task, 15)
