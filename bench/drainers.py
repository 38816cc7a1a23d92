"""Worker processes of a drain benchmark, started together.

Each process is `python -m MODULE ARGS…` that prints `ready` once connected, starts on a
line from stdin, drains the queue, prints how many jobs it ran and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

TIMEOUT_SECONDS = 600


@contextlib.asynccontextmanager
async def ready(
    commands: list[list[str]],
) -> AsyncIterator[Callable[[], Coroutine[Any, Any, tuple[float, list[int]]]]]:
    """Start one process per command and wait until each says it is ready; yields `go`,
    which starts them all and returns the seconds until the last one finished and how
    many jobs each ran."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for command in commands
    ]

    async def go() -> tuple[float, list[int]]:
        started = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            process.stdin.flush()
        counts = await asyncio.wait_for(
            asyncio.gather(*(asyncio.to_thread(_ran, process) for process in processes)),
            TIMEOUT_SECONDS,
        )
        return time.perf_counter() - started, counts

    try:
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(
                asyncio.to_thread(process.stdout.readline), TIMEOUT_SECONDS
            )
            if line.strip() != b"ready":
                raise RuntimeError(f"{commands[0][0]} did not start: {line!r}")
        yield go
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _ran(process: subprocess.Popen[bytes]) -> int:
    out, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    return int(out.split()[-1])


def say(line: str) -> None:
    """A worker process's line to the benchmark."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def wait_for_go() -> None:
    await asyncio.to_thread(sys.stdin.readline)
