"""Real worker and API processes for fault tests, with their logs read as they come, and a
counter of the completions they announce."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections import Counter
from pathlib import Path

from db import notifications
from tests import graphql_client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Process:
    """One `python -m MODULE` child; its output is kept and watched for a line."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self._seen = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            async with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    async def wait_for_line(self, text: str, timeout: float = 30) -> str:
        """The first output line containing `text`, waiting at most `timeout` seconds."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        async with self._seen:
            await asyncio.wait_for(
                self._seen.wait_for(lambda: found() is not None or self._reader.done()), timeout
            )
        line = found()
        assert line is not None, f"{self.name} ended without printing {text!r}:\n" + self.output
        return line

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def children(self) -> list[int]:
        """Process ids of this process's direct children (its Stockfish engines)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.wait_for(self._reader, timeout)
        return code

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.wait(30)


class Processes:
    """Starts workers and API processes on one database; kills what is left at the end.
    The clients of `tests.graphql_client` send the API processes `key`."""

    def __init__(self, database_url: str, workdir: Path, key: str) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.key = key
        self.started: list[Process] = []
        self.addresses: list[str] = []

    async def start(self, module: str, **env: str) -> Process:
        environment = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
        )
        child = Process(f"{module}[{process.pid}]", process)
        self.started.append(child)
        return child

    async def worker(self, slots: int = 1, **env: str) -> Process:
        """A worker process, once it is ready to claim."""
        worker = await self.start("engine", ENGINE_SLOTS=str(slots), **env)
        await worker.wait_for_line(" ready: ")
        return worker

    async def api(self, **env: str) -> tuple[Process, int]:
        """An API process and its port, once it serves."""
        port = free_port()
        api = await self.start("api", PORT=str(port), **env)
        await api.wait_for_line("Application startup complete")
        self.addresses.append(f"http://127.0.0.1:{port}")
        graphql_client.remember_key(self.addresses[-1], self.key)
        return api, port

    async def close(self) -> None:
        for address in self.addresses:
            graphql_client.forget_key(address)
        for child in self.started:
            if child.process.returncode is None:
                child.signal(signal.SIGKILL)
        for child in self.started:
            with contextlib.suppress(Exception):
                await child.wait(30)


class Completions:
    """Counts `analysis_done` notifications per id, across reconnects."""

    def __init__(self, url: str) -> None:
        self.counts: Counter[uuid.UUID] = Counter()
        self.listener = notifications.Listener(
            url, [notifications.ANALYSIS_DONE], self._count, ping_interval=0.5
        )

    def _count(self, _channel: str, payload: str) -> None:
        ended = notifications.parse_ids_payload(payload)
        assert ended is not None
        self.counts.update(ended)
