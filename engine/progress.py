"""Live progress of the searches someone watches: each finished iteration's lines, on
their way to `analysis_progress` (`db.progress`).

A job is watched when it is claimed (`ClaimedJob.watched`), or from the moment its
worker hears so (an `analysis_watch` notification, or a heartbeat's `Lease.watched`),
until a publication finds nobody watching any more. While it is, its slot's `Publisher`
sees every report the engine sends and picks out the end of each iteration: the report
of the last line at a depth not seen before (Stockfish reports every line at the end of
an iteration, best first; after a few seconds also in the middle of one, the lines it
has not searched again yet at the previous depth).

Publishing never holds the engine's report loop up: `see` keeps the newest finished
iteration (a few references) and a task of its own writes it. That task sends at most
one publication every `PUBLISH_INTERVAL` seconds and one at a time; an iteration that
ends meanwhile replaces the one waiting, so a listener always gets the newest search
and the database a few statements a second per watched slot at most. A slot's next job
waits for its last publication still on its way, so a slot never has two.

Progress is worth little: a publication that fails (the database away for a moment) is
logged once per job and left; the next iteration tries again. It never ends a job.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import chess
import chess.engine

from db.claims import ClaimedJob
from db.errors import TransientDatabaseError
from db.models import ResultLine
from engine import analysis

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.25
"""Seconds between two publications of one job's progress, at least."""


class Send(Protocol):
    """Writes one publication; False when nobody watches the run any more
    (`db.progress.publish`, its connections given)."""

    def __call__(
        self,
        run: uuid.UUID,
        *,
        depth: int,
        nodes: int | None,
        elapsed: float | None,
        lines: Sequence[ResultLine],
    ) -> Awaitable[bool]: ...


@dataclass(frozen=True)
class Snapshot:
    """A search as it stood when the engine finished an iteration."""

    depth: int
    nodes: int | None
    elapsed: float | None
    """Seconds searched."""
    reports: Sequence[chess.engine.InfoDict]
    """The latest report of each line, best first (`Reports.final`); made into result
    lines only when sent, so that an iteration replaced while it waits costs nothing."""


class Publisher:
    """The progress of one job: whether someone watches it, and its publications.

    `see` runs in the engine's report loop: it only compares a few numbers, and at the
    end of an iteration keeps a snapshot and starts the sending task if none runs.
    """

    def __init__(
        self,
        job: ClaimedJob,
        send: Send,
        *,
        interval: float = PUBLISH_INTERVAL,
        after: asyncio.Future[Any] | None = None,
    ) -> None:
        self.watching = False
        """Publish this job's progress (tested for every report)."""
        self._job = job
        self._send = send
        self._interval = interval
        self._after = after
        """The previous job's publication still on its way: sent before this job's."""
        self._board: chess.Board | None = None
        self._last_rank = 0
        """The rank of the last line an iteration reports (fewer legal moves than lines
        asked for: fewer lines)."""
        self._depth = 0
        """The deepest iteration offered."""
        self._pending: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._sent_at = -math.inf
        self._complained = False
        self._closed = False
        if job.watched:
            self.watch()

    def watch(self) -> None:
        """Someone watches the job: publish from its next finished iteration on."""
        if self._closed:
            return
        if self._board is None:
            self._board = chess.Board(self._job.fen)
            legal = self._board.legal_moves.count()
            self._last_rank = min(self._job.num_moves_to_return, legal)
        self.watching = True

    def see(self, info: chess.engine.InfoDict, reports: analysis.Reports) -> None:
        """Take in a report `reports` has seen; at the end of an iteration, offer it."""
        if info.get("multipv", 1) != self._last_rank:
            return
        depth = info.get("depth", 0)
        if depth <= self._depth or "pv" not in info or analysis.is_bound(info):
            return
        self._depth = depth
        self.offer(Snapshot(depth, info.get("nodes"), info.get("time"), reports.final()))

    def offer(self, snapshot: Snapshot) -> None:
        """Publish `snapshot` as soon as the interval and the publication on its way
        allow; a snapshot still waiting then is replaced."""
        self._pending = snapshot
        if self._task is None:
            self._task = asyncio.create_task(self._publish(), name=f"progress-{self._job.id}")

    def close(self) -> asyncio.Future[Any] | None:
        """The job is over: nothing more is published. The publication on its way, if
        any, goes on; it is returned, for the slot's next job to wait for."""
        self._closed = True
        self.watching = False
        self._pending = None
        if self._sending:
            return self._task
        if self._task is not None:
            self._task.cancel()  # it only waited for its turn
        return self._after

    async def _publish(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._after is not None:
                await asyncio.wait({self._after})
                self._after = None
            while self._pending is not None:
                wait = self._sent_at + self._interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                snapshot, self._pending = self._pending, None
                self._sent_at = loop.time()
                self._sending = True
                try:
                    watched = await self._send_one(snapshot)
                finally:
                    self._sending = False
                if not watched:
                    self.watching = False
                    self._pending = None
        finally:
            self._task = None

    async def _send_one(self, snapshot: Snapshot) -> bool:
        """Send one snapshot; False when nobody watches any more (or publishing is
        broken for this job)."""
        try:
            assert self._board is not None  # set by `watch`, before any snapshot
            return await self._send(
                self._job.id,
                depth=snapshot.depth,
                nodes=snapshot.nodes,
                elapsed=snapshot.elapsed,
                lines=analysis.lines_from_infos(self._board, snapshot.reports),
            )
        except TransientDatabaseError as exc:
            self._complain("cannot publish progress (%s); trying again later", exc)
            return True
        except Exception:
            self._complain("publishing progress failed; no more for now", exc_info=True)
            return False

    def _complain(self, message: str, *args: object, exc_info: bool = False) -> None:
        if not self._complained:
            self._complained = True
            log.warning(message, *args, exc_info=exc_info)
