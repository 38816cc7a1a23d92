"""The progress of the searches this API process's clients follow.

Every `analysisProgress` subscription registers a `Follower` of its analysis's run. The
board marks the runs its followers follow as watched in the database (`db.progress`),
in one statement for the subscriptions that arrive together, and keeps the marks ahead
while they are followed, so that their workers publish. An `analysis_progress`
notification makes the board read that run's progress once and hand it to every
follower of the run: a thousand followers cost one read per report. A follower that
arrives while a search runs gets its latest state at once.

A mark outlives its last follower by `watch_seconds` at most (the workers then stop
publishing). Each renewal also reads the progress of every followed run again, so a
report whose notification was lost (the LISTEN connection dropped) reaches its
followers within a renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from db import progress
from db.progress import Progress

log = logging.getLogger(__name__)

FORGET_AFTER_SECONDS = 60.0
"""Marks expired this long ago are deleted by the renewals."""


class Follower:
    """One subscription's view of one run's progress, registered while entered."""

    __slots__ = ("_board", "_future", "_given", "_run", "latest")

    def __init__(self, board: ProgressBoard, run: uuid.UUID) -> None:
        self._board = board
        self._run = run
        self._future: asyncio.Future[None] | None = None
        self._given: Progress | None = None
        self.latest: Progress | None = None
        """The newest progress handed over."""

    def hand(self, found: Progress) -> None:
        """Newer progress of the run (older or equal is ignored)."""
        latest = self.latest
        if latest is not None and (found.depth, found.nodes or 0) <= (
            latest.depth,
            latest.nodes or 0,
        ):
            return
        self.latest = found
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> Progress:
        """The newest progress not yet taken, waiting for it if need be."""
        while self.latest is None or self.latest is self._given:
            self._future = asyncio.get_running_loop().create_future()
            try:
                await self._future
            finally:
                self._future = None
        self._given = self.latest
        return self.latest

    def __enter__(self) -> Follower:
        self._board.register(self._run, self)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._board.unregister(self._run, self)


class ProgressBoard:
    """Hands the progress of followed runs to their followers."""

    def __init__(self, pool: Any, *, watch_seconds: float) -> None:
        self._pool = pool
        self._watch_seconds = watch_seconds
        self._followers: dict[uuid.UUID, list[Follower]] = {}
        self._to_watch: set[uuid.UUID] = set()
        self._to_read: set[uuid.UUID] = set()
        self._flushing: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None

    @property
    def following(self) -> int:
        """How many followers are registered (for tests and metrics)."""
        return sum(len(followers) for followers in self._followers.values())

    def follower(self, run: uuid.UUID) -> Follower:
        """A follower of `run`'s progress, registered while entered."""
        return Follower(self, run)

    def register(self, run: uuid.UUID, follower: Follower) -> None:
        followers = self._followers.setdefault(run, [])
        if not followers:
            self._to_watch.add(run)
        followers.append(follower)
        self._to_read.add(run)
        self._flush_soon()

    def unregister(self, run: uuid.UUID, follower: Follower) -> None:
        followers = self._followers.get(run)
        if followers is not None:
            with contextlib.suppress(ValueError):
                followers.remove(follower)
            if not followers:
                del self._followers[run]

    def notified(self, run: uuid.UUID) -> None:
        """A run's progress was published: read it for its followers."""
        if run in self._followers:
            self._to_read.add(run)
            self._flush_soon()

    def start(self) -> None:
        """Start renewing the marks of followed runs."""
        self._renewing = asyncio.create_task(self._renew(), name="progress marks")

    async def close(self) -> None:
        for task in (self._renewing, self._flushing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _flush_soon(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._to_watch or self._to_read:
            await asyncio.sleep(0)  # let the subscriptions and reports that came together gather
            to_watch, self._to_watch = [r for r in self._to_watch if r in self._followers], set()
            to_read, self._to_read = [r for r in self._to_read if r in self._followers], set()
            try:
                await progress.watch(self._pool, to_watch, self._watch_seconds)
                self._hand_out(await progress.read(self._pool, to_read))
            except Exception:
                # Followers still hear of the end; the next renewal marks and reads again.
                log.warning("marking or reading the progress of %d runs failed", len(to_read))

    def _hand_out(self, found: dict[uuid.UUID, Progress]) -> None:
        for run, state in found.items():
            for follower in self._followers.get(run, ()):
                follower.hand(state)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._watch_seconds / 3)
            runs = list(self._followers)
            try:
                await progress.watch(self._pool, runs, self._watch_seconds)
                await progress.forget_unwatched(self._pool, FORGET_AFTER_SECONDS)
                self._hand_out(await progress.read(self._pool, runs))
            except Exception:
                log.warning("renewing the progress marks of %d runs failed", len(runs))
