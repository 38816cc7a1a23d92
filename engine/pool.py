"""Long-lived Stockfish processes, one per worker slot.

A python-chess engine runs one command at a time and a start costs a few hundred
milliseconds, so each slot keeps its own process for as long as it lives and replaces
it only when it dies or hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import chess.engine

log = logging.getLogger(__name__)


class EngineStartError(RuntimeError):
    """The engine binary could not be started or did not speak UCI."""


class Stockfish:
    """One Stockfish process and the UCI protocol that talks to it."""

    def __init__(self, path: Path, *, hash_mb: int, start_timeout: float) -> None:
        self.path = path
        self._hash_mb = hash_mb
        self._start_timeout = start_timeout
        self._protocol: chess.engine.UciProtocol | None = None
        self.name = "unknown engine"
        """The engine's own name, e.g. "Stockfish 15.1"."""

    @property
    def protocol(self) -> chess.engine.UciProtocol:
        """The running engine; raises when it is not started."""
        if self._protocol is None:
            raise chess.engine.EngineTerminatedError("engine is not running")
        return self._protocol

    @property
    def running(self) -> bool:
        """True while a process is started (it may still have died since)."""
        return self._protocol is not None

    @property
    def pid(self) -> int | None:
        """The engine's process id, while it runs."""
        transport = self._protocol.transport if self._protocol is not None else None
        return None if transport is None else transport.get_pid()

    async def start(self) -> None:
        """Start the process, configured as `configuration` says.

        The engine gets its own process group, so a Ctrl-C meant for the worker does not
        kill it mid-analysis; it still exits when the worker dies and its stdin closes.
        """
        try:
            async with asyncio.timeout(self._start_timeout):
                _transport, protocol = await chess.engine.popen_uci(str(self.path), setpgrp=True)
                try:
                    await protocol.configure(configuration(protocol, self._hash_mb))
                except BaseException:
                    await _quit(protocol, self._start_timeout)
                    raise
        except (OSError, TimeoutError, chess.engine.EngineError) as exc:
            raise EngineStartError(f"cannot start engine {self.path}: {exc!r}") from exc
        self._protocol = protocol
        self.name = str(protocol.id.get("name", self.path.name))

    async def restart(self) -> None:
        """Replace the process (after it died or hung)."""
        log.warning("restarting engine %s", self.path)
        await self.close()
        await self.start()

    async def close(self) -> None:
        """Stop the process; kill it when it does not quit in time."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            await _quit(protocol, self._start_timeout)


def configuration(protocol: chess.engine.UciProtocol, hash_mb: int) -> dict[str, int | bool]:
    """The options a slot's engine runs with: one thread, a bounded hash table, and win,
    draw and loss chances beside each score (`UCI_ShowWDL`) when the engine offers them."""
    options: dict[str, int | bool] = {"Threads": 1, "Hash": hash_mb}
    if "UCI_ShowWDL" in protocol.options:
        options["UCI_ShowWDL"] = True
    return options


async def _quit(protocol: chess.engine.UciProtocol, timeout: float) -> None:
    transport = protocol.transport
    try:
        await asyncio.wait_for(protocol.quit(), timeout)
    except (TimeoutError, chess.engine.EngineError):
        if transport is not None:
            with contextlib.suppress(ProcessLookupError):
                transport.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(protocol.returncode, timeout)
    finally:
        if transport is not None:
            transport.close()


async def start_engines(
    path: Path, count: int, *, hash_mb: int, start_timeout: float
) -> list[Stockfish]:
    """Start `count` engines side by side; all or none."""
    engines = [Stockfish(path, hash_mb=hash_mb, start_timeout=start_timeout) for _ in range(count)]
    results = await asyncio.gather(*(engine.start() for engine in engines), return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        await asyncio.gather(*(engine.close() for engine in engines), return_exceptions=True)
        raise failures[0]
    return engines
