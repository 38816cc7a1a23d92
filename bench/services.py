"""The service's own processes for a benchmark: one API, workers, on one database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx

from db.settings import asyncpg_dsn

START_TIMEOUT_SECONDS = 60

ANONYMOUS_UNLIMITED = {
    "API_ANONYMOUS": "true",
    "API_ANONYMOUS_MAX_QUEUED": "10000000",
    "API_ANONYMOUS_ENGINE_SECONDS_PER_HOUR": "10000000",
    "API_ANONYMOUS_PER_ADDRESS_PER_MINUTE": "1000000",
}
"""The benchmarks' clients send no key: they are the anonymous tenant, with quotas no
benchmark reaches (its submissions are still checked and charged as anyone's)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(module: str, url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", **env}
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module], env=environment, stdout=output, stderr=output
        )


async def wait_ready(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"API on port {port} not ready in {START_TIMEOUT_SECONDS} s")


async def wait_workers(url: str, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        while time.monotonic() < deadline:
            if await connection.fetchval("SELECT count(*) FROM workers WHERE listening") >= count:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    raise TimeoutError(f"{count} workers not ready in {START_TIMEOUT_SECONDS} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def running(
    url: str, log_dir: Path, *, workers: int = 1, slots: int | None = None, **api_env: str
) -> AsyncIterator[tuple[int, subprocess.Popen[bytes]]]:
    """An API process (its port and process) and `workers` worker processes."""
    port = free_port()
    api = start(
        "api", url, log_dir / "api.log", PORT=str(port), **{**ANONYMOUS_UNLIMITED, **api_env}
    )
    engines = [
        start(
            "engine",
            url,
            log_dir / f"worker-{n}.log",
            **({"ENGINE_SLOTS": str(slots)} if slots else {}),
        )
        for n in range(workers)
    ]
    try:
        await wait_ready(port)
        if workers:
            await wait_workers(url, workers)
        yield port, api
    finally:
        for process in [*engines, api]:
            stop(process)
