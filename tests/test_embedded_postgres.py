"""The embedded server is safe to handle: `stop` refuses while a process serves with it or a
client is connected (unless forced), a crashed user blocks nothing, the last user out stops
a server that `make run` started, and a server that cannot take its socket says why."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from db.settings import asyncpg_dsn
from tooling import embedded_postgres

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_SECONDS = 60


@contextlib.contextmanager
def own_data_dir() -> Iterator[Path]:
    """A data directory for an embedded server of one test's own, stopped and removed after.

    Under the system's temporary directory rather than pytest's: as root the server runs as
    a user of its own, which must reach the directory, and pytest keeps its own private."""
    path = Path(tempfile.mkdtemp(prefix="chess-analysis-test-"))
    try:
        yield path
    finally:
        embedded_postgres.stop(path, mode="immediate")
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with own_data_dir() as path:
        yield path


def postgres_command(data_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`chess-analysis-postgres ARGUMENTS` on `data_dir`, in a process of its own."""
    environment = {
        **{name: value for name, value in os.environ.items() if name not in ("DB_DATA_DIR",)},
        "DB_DATA_DIR": str(data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "tooling.embedded_postgres", *arguments],
        env=environment,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def registrations(data_dir: Path) -> list[Path]:
    users = data_dir / embedded_postgres.USERS_DIR
    return sorted(users.iterdir()) if users.is_dir() else []


def test_stop_refuses_while_a_process_serves_with_the_server(data_dir: Path) -> None:
    with embedded_postgres.serving(None, data_dir):
        refused = postgres_command(data_dir, "stop")
        assert refused.returncode == 1, refused.stderr
        assert "is in use, so it keeps running" in refused.stderr
        assert f"pid {os.getpid()} serves with it" in refused.stderr
        assert "chess-analysis-postgres stop --force" in refused.stderr
        assert "Traceback" not in refused.stderr
        status = postgres_command(data_dir, "status")
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout
        assert f"pid {os.getpid()} serves with it" in status.stdout

        forced = postgres_command(data_dir, "stop", "--force")
        assert forced.returncode == 0, forced.stderr
        assert embedded_postgres.status(data_dir) is None
        assert postgres_command(data_dir, "status").returncode == 3
    assert registrations(data_dir) == []


async def test_stop_refuses_while_a_client_is_connected(data_dir: Path) -> None:
    server = embedded_postgres.start(data_dir)
    connection = await asyncpg.connect(
        asyncpg_dsn(server.url), server_settings={"application_name": "a-test-client"}
    )
    try:
        refused = await asyncio.to_thread(postgres_command, data_dir, "stop")
        assert refused.returncode == 1, refused.stderr
        assert "1 client connection: a-test-client (1)" in refused.stderr
        assert embedded_postgres.status(data_dir) is not None
    finally:
        await connection.close()
    stopped = await asyncio.to_thread(postgres_command, data_dir, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert embedded_postgres.status(data_dir) is None


async def test_a_process_that_died_serving_blocks_nothing(data_dir: Path) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tooling import embedded_postgres\n"
        "with embedded_postgres.serving(None, Path(sys.argv[1])):\n"
        "    print('serving', flush=True)\n"
        "    time.sleep(120)\n",
        str(data_dir),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), COMMAND_TIMEOUT_SECONDS)
        assert line == b"serving\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), COMMAND_TIMEOUT_SECONDS)
    assert len(registrations(data_dir)) == 1, "its registration outlives it"

    stopped = await asyncio.to_thread(postgres_command, data_dir, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert embedded_postgres.status(data_dir) is None
    assert registrations(data_dir) == [], "the stale registration was removed"


def test_the_last_process_serving_stops_the_server_a_serving_started(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = embedded_postgres.serving(None, data_dir)
    second = embedded_postgres.serving(None, data_dir)
    first.__enter__()
    second.__enter__()
    with caplog.at_level(logging.INFO, logger=embedded_postgres.__name__):
        first.__exit__(None, None, None)
    assert embedded_postgres.status(data_dir) is not None, "the second still serves"
    assert "embedded PostgreSQL keeps running" in caplog.text
    second.__exit__(None, None, None)
    assert embedded_postgres.status(data_dir) is None
    assert registrations(data_dir) == []


def test_a_server_started_by_hand_runs_until_stop(data_dir: Path) -> None:
    started = postgres_command(data_dir, "start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("postgresql://")
    with embedded_postgres.serving(None, data_dir) as url:
        assert url == started.stdout.strip()
    assert embedded_postgres.status(data_dir) is not None
    assert postgres_command(data_dir, "stop").returncode == 0
    assert embedded_postgres.status(data_dir) is None


def test_a_socket_held_by_another_server_is_explained(data_dir: Path) -> None:
    server = embedded_postgres.ensure_running(data_dir)
    embedded_postgres.stop(data_dir)
    # What another server on the same socket leaves: a lock file naming a live process of
    # the server's user (PostgreSQL takes a lock of another user's process for stale).
    user = embedded_postgres.SYSTEM_USER if os.geteuid() == 0 else None
    other = subprocess.Popen(["sleep", "120"], user=user, cwd="/")
    lock = server.socket_dir / ".s.PGSQL.5432.lock"
    lock.write_text(f"{other.pid}\n{server.data_dir}\n")
    try:
        with pytest.raises(embedded_postgres.EmbeddedServerError) as raised:
            embedded_postgres.ensure_running(data_dir)
    finally:
        lock.unlink(missing_ok=True)
        other.kill()
        other.wait()
    message = str(raised.value)
    assert "did not start" in message
    assert f"Is another postmaster (PID {other.pid})" in message
    assert "Another PostgreSQL server holds this data directory or its socket" in message
    assert "DB_DATA_DIR" in message
