"""Every command answers `--help` and starts nothing; refuses what it does not know; and
`make run` (scripts/run.py) checks its port before it starts anything and names the
GraphiQL address only once the API answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.transport import review_page
from tests.processes import Process, free_port
from tests.test_embedded_postgres import own_data_dir
from tooling import embedded_postgres

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(sys.executable).parent
"""Where `pip install` put the console scripts (the virtual environment's bin/)."""
HELP_TIMEOUT_SECONDS = 30
"""A bound on a `--help`, which takes about a second: well past it, the command serves."""

COMMANDS = {
    "chess-analysis-api": [str(SCRIPTS / "chess-analysis-api")],
    "python -m api": [sys.executable, "-m", "api"],
    "chess-analysis-worker": [str(SCRIPTS / "chess-analysis-worker")],
    "python -m engine": [sys.executable, "-m", "engine"],
    "chess-analysis-migrate": [str(SCRIPTS / "chess-analysis-migrate")],
    "chess-analysis-postgres": [str(SCRIPTS / "chess-analysis-postgres")],
    "python -m tooling.embedded_postgres": [sys.executable, "-m", "tooling.embedded_postgres"],
    "scripts/run.py": [sys.executable, str(ROOT / "scripts" / "run.py")],
    "chess-analysis-keys": [str(SCRIPTS / "chess-analysis-keys")],
}
WORDS = {
    "chess-analysis-api": ["GraphQL API", "PORT=8000", "DATABASE_URL", "LOG_FORMAT=json"],
    "python -m api": ["GraphQL API", "PORT=8000"],
    "chess-analysis-worker": ["worker", "ENGINE_SLOTS=", "STOCKFISH_PATH", "DATABASE_URL"],
    "python -m engine": ["worker", "ENGINE_SLOTS="],
    "chess-analysis-migrate": ["migrations", "revision", "DB_DATA_DIR=.data"],
    "chess-analysis-postgres": ["start", "stop", "status", "--force", "DB_DATA_DIR=.data"],
    "python -m tooling.embedded_postgres": ["start", "stop", "status"],
    "scripts/run.py": ["make run", "PORT=8000", "DB_DATA_DIR=.data", "GraphiQL"],
    "chess-analysis-keys": ["create", "list", "revoke", "DATABASE_URL"],
}


def environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment without the settings the tests choose, plus `settings`."""
    chosen = (
        "DATABASE_URL",
        "DB_URL",
        "DB_DATA_DIR",
        "PORT",
        "API_PORT",
        "ENGINE_METRICS_PORT",
        "API_ANONYMOUS",
    )
    kept = {name: value for name, value in os.environ.items() if name not in chosen}
    return {**kept, "DB_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **settings}


@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    """A TCP socket that listens and never accepts: a connection to it stays pending."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield server


def connected(server: socket.socket) -> bool:
    """True when someone connected to `server`."""
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def session_members(session: int) -> list[int]:
    """The processes left in a session (a child started with `start_new_session`)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[3]) == session:
                members.append(int(stat.parent.name))
    return members


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=HELP_TIMEOUT_SECONDS)
    finally:
        for pid in [process.pid, *session_members(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
    left = session_members(process.pid)
    assert not left, f"{command} left processes behind: {left}"
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_describes_the_command_and_starts_nothing(name: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    with listener() as database:
        database_url = f"postgresql://chess@127.0.0.1:{database.getsockname()[1]}/chess"
        for flag, env in [
            ("--help", environment(data_dir, PORT=str(port), DATABASE_URL=database_url)),
            ("-h", environment(data_dir, PORT=str(port))),
        ]:
            started = time.monotonic()
            result = run([*COMMANDS[name], flag], env)
            took = time.monotonic() - started
            assert result.returncode == 0, result.stderr
            assert result.stdout.startswith("usage: "), result.stdout
            assert "environment" in result.stdout
            for word in WORDS[name]:
                assert word in result.stdout, f"{word!r} missing from {name} {flag}"
            assert "Traceback" not in result.stderr, result.stderr
            assert took < HELP_TIMEOUT_SECONDS / 2, f"{name} {flag} took {took:.1f} s"
            assert not connected(database), f"{name} {flag} connected to the database"
            assert not data_dir.exists(), f"{name} {flag} started the embedded server"
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"{name} {flag} serves"


REFUSED = [
    *[(name, ["--bogus"]) for name in COMMANDS],
    ("chess-analysis-api", ["serve"]),
    ("chess-analysis-worker", ["--slots", "2"]),
    ("chess-analysis-migrate", ["head", "extra"]),
    ("chess-analysis-postgres", ["stop", "--bogus"]),
    ("chess-analysis-postgres", ["bogus"]),
    ("chess-analysis-postgres", []),
]


@pytest.mark.parametrize(
    ("name", "arguments"),
    [pytest.param(name, arguments, id=" ".join([name, *arguments])) for name, arguments in REFUSED],
)
def test_unknown_arguments_are_refused_with_the_usage(
    name: str, arguments: list[str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    result = run([*COMMANDS[name], *arguments], environment(data_dir))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("usage: "), result.stderr
    assert "error:" in result.stderr
    assert result.stdout == ""
    assert not data_dir.exists()


def test_the_postgres_commands_each_have_help(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run([*COMMANDS["chess-analysis-postgres"], "stop", "--help"], environment(data_dir))
    assert result.returncode == 0, result.stderr
    assert "--force" in result.stdout
    assert not data_dir.exists()


@pytest.mark.parametrize("variable", ["PORT", "API_PORT"])
def test_run_refuses_a_taken_port_before_starting_anything(variable: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with listener() as taken:
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run(COMMANDS["scripts/run.py"], environment(data_dir, **{variable: str(port)}))
        took = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert f"port {port} is taken: set {variable}=" in result.stderr
    assert "GraphiQL" not in result.stdout + result.stderr
    assert took < HELP_TIMEOUT_SECONDS / 2
    assert not data_dir.exists(), "nothing was started"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with own_data_dir() as path:
        yield path


async def test_run_names_graphiql_once_the_api_answers(stockfish: Path, data_dir: Path) -> None:
    port = free_port()
    env = environment(data_dir, PORT=str(port), ENGINE_SLOTS="1", LOG_FORMAT="text")
    env["STOCKFISH_PATH"] = str(stockfish)
    process = await asyncio.create_subprocess_exec(
        *COMMANDS["scripts/run.py"],
        env=env,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    run_py = Process("scripts/run.py", process)
    banner = f"GraphiQL: http://localhost:{port}/graphql   (Ctrl-C to stop)"
    children: list[int] = []
    try:
        printed = asyncio.ensure_future(run_py.wait_for_line(banner, timeout=60))
        ended = asyncio.ensure_future(process.wait())
        await asyncio.wait([printed, ended], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if not printed.done():
            printed.cancel()
            pytest.fail(f"no banner (exit status {process.returncode}):\n{run_py.output}")
        await printed
        children = run_py.children()
        # One stream for all: the API's log precedes the banner only if it served first.
        banner_at = next(at for at, line in enumerate(run_py.lines) if banner in line)
        served = [
            line for line in run_py.lines[:banner_at] if "Application startup complete" in line
        ]
        assert served, run_py.output
        if review_page.built():  # the page's address follows GraphiQL's
            page = f"Review page: http://localhost:{port}/"
            assert any(page in line for line in run_py.lines[banner_at:]), run_py.output
        async with httpx.AsyncClient(timeout=5) as client:
            health = await client.get(f"http://127.0.0.1:{port}/healthz")
            # A newcomer's first request needs no key: `make run` serves anonymously.
            viewer = await client.post(
                f"http://127.0.0.1:{port}/graphql", json={"query": "{ viewer { name } }"}
            )
        assert health.status_code == 200
        assert viewer.json() == {"data": {"viewer": {"name": "anonymous"}}}, viewer.text
        run_py.signal(signal.SIGINT)
        assert await run_py.wait(15) == 0, run_py.output
        assert sum(banner in line for line in run_py.lines) == 1, run_py.output
        assert embedded_postgres.status(data_dir) is None, "the embedded server was stopped"
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the API was stopped"
    finally:
        for pid in children or run_py.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.returncode is None:
            await run_py.kill()
