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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.context import Services
from api.settings import ApiSettings
from api.transport import server as api_server
from db import migrations, tenants
from db.session import create_engine, create_pool
from db.settings import DatabaseSettings, asyncpg_dsn, with_database
from engine.settings import EngineSettings, find_stockfish
from engine.worker import Worker
from runtime import logs
from tests import graphql_client
from tests.processes import Completions, Processes
from tooling import embedded_postgres

REFERENCE_FEN = "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1"
"""Black mates in two: 1… Rc1+ 2. Re1 Rxe1#."""

logs.add_ids_to_records()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of the server's maintenance database."""
    settings = DatabaseSettings()
    with embedded_postgres.serving(settings.url, settings.data_dir) as url:
        yield url


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


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The asyncpg pool the worker's claims and finishes use, on this test's database."""
    connections = await create_pool(DatabaseSettings(), database_url, application_name="tests")
    yield connections
    await connections.close()


@pytest.fixture(scope="session")
def stockfish() -> Path:
    """The real engine binary; missing it fails the run in CI and skips elsewhere."""
    path = find_stockfish(os.environ.get("STOCKFISH_PATH"))
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Stockfish is required in CI (apt-get install stockfish)")
        pytest.skip("Stockfish is not installed")
    return path


WorkerFactory = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(
    database: AsyncEngine, pool: asyncpg.Pool, database_url: str, stockfish: Path
) -> AsyncIterator[WorkerFactory]:
    """Start in-process workers on this test's database (stopped when the test ends)."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**settings: Any) -> Worker:
        worker = Worker(
            EngineSettings(**{"slots": 2, "poll_interval": 300.0, **settings}),
            database,
            pool,
            database_url,
            stockfish,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        running.append((stop, task))
        ready = asyncio.create_task(worker.ready.wait())
        await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert worker.ready.is_set(), "worker did not start in 30 s"
        return worker

    yield start
    for stop, _ in running:
        stop.set()
    await asyncio.wait_for(asyncio.gather(*(task for _, task in running)), 60)


@pytest.fixture
async def worker(start_worker: WorkerFactory) -> Worker:
    """A worker with two slots that polls only every 300 s (so NOTIFY must wake it)."""
    return await start_worker()


@dataclass(frozen=True)
class Keys:
    """The keys the test servers are started with, on this test's database."""

    analyse: str
    """The key of tenant "tests" (scope analyse, no quotas): what clients send by default."""
    admin: str
    """The key of tenant "admin" (scopes analyse and admin, no quotas)."""


@pytest.fixture
async def keys(pool: asyncpg.Pool) -> Keys:
    """Two keys on this test's database, made as `chess-analysis-keys create` makes them."""
    _, analyse = await tenants.create(pool, "tests")
    _, admin = await tenants.create(pool, "admin", admin=True)
    return Keys(analyse=analyse, admin=admin)


class Server:
    """A real uvicorn serving the API on a free loopback port. The clients of
    `tests.graphql_client` send it `key` unless told otherwise."""

    def __init__(self, server: uvicorn.Server, keys: Keys) -> None:
        self._server = server
        self.key = keys.analyse
        """The key of tenant "tests" (scope analyse)."""
        self.admin_key = keys.admin
        """The key of tenant "admin"."""

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers carrying `key`."""
        return graphql_client.authorization(self.key)

    @property
    def admin_headers(self) -> dict[str, str]:
        """HTTP headers carrying `admin_key`."""
        return graphql_client.authorization(self.admin_key)

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
    def services(self) -> Services:
        """The running process's services (its hub, its database engine)."""
        app: Any = self._server.config.app
        services: Services = app.state.services
        return services


ApiFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_api(database_url: str, keys: Keys) -> AsyncIterator[ApiFactory]:
    """Serve the API on this test's database over real HTTP and WebSocket; its clients
    send `keys.analyse` unless told otherwise (anonymous use is off, as by default)."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    addresses: list[str] = []

    async def start(**settings: Any) -> Server:
        api_settings = ApiSettings(**{"host": "127.0.0.1", **settings})
        app = create_app(api_settings, DatabaseSettings(), database_url)
        server = uvicorn.Server(api_server.config(app, api_settings, port=0))
        task = asyncio.create_task(server.serve())
        servers.append((server, task))
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        serving = Server(server, keys)
        addresses.append(serving.http_url)
        graphql_client.remember_key(serving.http_url, keys.analyse)
        return serving

    yield start
    for address in addresses:
        graphql_client.forget_key(address)
    for server, _ in servers:
        server.should_exit = True
    await asyncio.wait_for(asyncio.gather(*(task for _, task in servers)), 15)


@pytest.fixture
async def api(start_api: ApiFactory) -> Server:
    """The API with default settings."""
    return await start_api()


@pytest.fixture
async def processes(database_url: str, tmp_path: Path, keys: Keys) -> AsyncIterator[Processes]:
    group = Processes(database_url, tmp_path, keys.analyse)
    yield group
    await group.close()


@pytest.fixture
async def completions(database_url: str) -> AsyncIterator[Completions]:
    counter = Completions(database_url)
    await counter.listener.start()
    yield counter
    await counter.listener.close()
