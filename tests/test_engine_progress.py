"""Win, draw and loss chances, node limits, how far a search went, and live progress.

Engine answers are checked against a bare python-chess loop on the same settings (one
thread, the same hash, `UCI_ShowWDL`, a new game): at a fixed depth or node count,
Stockfish is deterministic. The publisher's timing is checked with a stand-in for
`db.progress.publish`; the worker's, with real PostgreSQL and Stockfish.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import asyncpg
import chess
import chess.engine
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db import progress as published
from db.claims import ClaimedJob
from db.errors import TransientDatabaseError
from db.models import AnalysisStatus, ResultLine
from db.settings import asyncpg_dsn
from engine import analysis
from engine.pool import Stockfish
from engine.progress import PUBLISH_INTERVAL, Publisher, Snapshot
from tests.conftest import REFERENCE_FEN, WorkerFactory
from tests.rows import request, store, wait_terminal

HASH_MB = 16
ITALIAN = "r1bqk1nr/pppp1ppp/2n5/2b1p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4"
FRENCH = "rnbqkb1r/ppp2ppp/4pn2/3p4/3PP3/2N5/PPP2PPP/R1BQKBNR w KQkq - 2 4"
NO_WHITE_QUEEN = "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNB1KBNR b KQkq - 0 1"
"""Black to move, and a queen up: chances far from even, to be seen from White's side."""
TWO_MOVES = "k7/8/8/8/8/8/8/K6r w - - 0 1"  # White's king, checked on the first rank: 2 moves


def job(
    fen: str = chess.STARTING_FEN,
    *,
    lines: int = 1,
    depth: int | None = None,
    time_limit: float = 60.0,
    nodes: int | None = None,
    watched: bool = False,
) -> ClaimedJob:
    return ClaimedJob(uuid.uuid4(), fen, lines, time_limit, depth, 1, 1, nodes, watched)


@pytest.fixture
async def engine(stockfish: Path) -> AsyncIterator[Stockfish]:
    """One engine as a worker's slot runs it."""
    engine = Stockfish(stockfish, hash_mb=HASH_MB, start_timeout=10)
    await engine.start()
    yield engine
    await engine.close()


async def bare(
    path: Path, fen: str, limit: chess.engine.Limit, multipv: int
) -> list[chess.engine.InfoDict]:
    """The final reports of a bare python-chess loop: one thread, the same hash, win,
    draw and loss chances shown, a new game."""
    transport, protocol = await chess.engine.popen_uci(str(path))
    try:
        await protocol.configure({"Threads": 1, "Hash": HASH_MB, "UCI_ShowWDL": True})
        return await protocol.analyse(chess.Board(fen), limit, multipv=multipv, game=uuid.uuid4())
    finally:
        await protocol.quit()
        transport.close()


def white_chances(info: chess.engine.InfoDict) -> tuple[int, int, int]:
    white = info["wdl"].white()
    return (white.wins, white.draws, white.losses)


# Win, draw and loss chances
@pytest.mark.parametrize(
    ("fen", "lines", "depth"), [(ITALIAN, 3, 12), (FRENCH, 2, 14), (NO_WHITE_QUEEN, 2, 12)]
)
async def test_chances_are_the_engines_from_whites_point_of_view(
    engine: Stockfish, stockfish: Path, fen: str, lines: int, depth: int
) -> None:
    analysed = await analysis.analyse(engine.protocol, job(fen, lines=lines, depth=depth), 30)
    infos = await bare(stockfish, fen, chess.engine.Limit(depth=depth), lines)
    assert [line.wdl for line in analysed.lines] == [white_chances(info) for info in infos]


async def test_a_mating_line_gives_the_side_that_mates_all_the_wins(
    engine: Stockfish, stockfish: Path
) -> None:
    black_mates = await analysis.analyse(engine.protocol, job(REFERENCE_FEN, lines=3, depth=10), 30)
    mate, *others = black_mates.lines
    assert (mate.mate_score, mate.wdl) == (-2, (0, 0, 1000))
    bare_others = (await bare(stockfish, REFERENCE_FEN, chess.engine.Limit(depth=10), 3))[1:]
    assert [line.wdl for line in others] == [white_chances(info) for info in bare_others]
    mirrored = chess.Board(REFERENCE_FEN).mirror().fen()
    white_mates = await analysis.analyse(engine.protocol, job(mirrored, depth=10), 30)
    assert [(line.mate_score, line.wdl) for line in white_mates.lines] == [(2, (1000, 0, 0))]


def test_a_mate_overrides_the_engines_estimate_and_no_estimate_is_none() -> None:
    estimate = chess.engine.Wdl(700, 200, 100)

    def line(score: chess.engine.Score, turn: chess.Color) -> chess.engine.InfoDict:
        pov = chess.engine.PovScore(score, turn)
        return info(1, 20, score=pov, wdl=chess.engine.PovWdl(estimate, turn))

    infos = [
        line(chess.engine.Mate(3), chess.BLACK),  # -3 for White; the engine says 70 % only
        line(chess.engine.Mate(5), chess.WHITE),
        line(chess.engine.Cp(-150), chess.BLACK),
        info(1, 20),  # no estimate
    ]
    lines = analysis.lines_from_infos(chess.Board(), infos)
    assert [line.wdl for line in lines] == [(0, 0, 1000), (1000, 0, 0), (100, 200, 700), None]


# Node limits and how far a search went
@pytest.mark.parametrize(("depth", "nodes"), [(12, None), (None, 150_000)])
async def test_a_depth_or_nodes_limit_stops_the_search_as_it_stops_a_bare_loop(
    engine: Stockfish, stockfish: Path, depth: int | None, nodes: int | None
) -> None:
    analysed = await analysis.analyse(
        engine.protocol, job(FRENCH, lines=2, depth=depth, nodes=nodes), 30
    )
    infos = await bare(stockfish, FRENCH, chess.engine.Limit(depth=depth, nodes=nodes), 2)
    searched = analysed.searched
    assert searched is not None and 0 < searched.seconds < 30
    assert searched.depth == min(info["depth"] for info in infos)
    assert searched.nodes == max(info["nodes"] for info in infos)
    if nodes is not None:  # Stockfish looks at the count every thousand nodes or so
        assert nodes <= searched.nodes <= nodes + 2048


async def test_a_search_stopped_by_the_clock_reports_its_shallowest_line(
    engine: Stockfish,
) -> None:
    analysed = await analysis.analyse(engine.protocol, job(lines=3, time_limit=0.5), 30)
    searched = analysed.searched
    assert searched is not None
    assert searched.depth == min(line.depth for line in analysed.lines) > 1
    assert searched.nodes > 0 and 0.45 < searched.seconds < 5


def test_a_search_at_its_depth_limit_stopped_by_its_nodes_limit_was_stopped_early() -> None:
    finals = cast(list[chess.engine.InfoDict], [{"depth": 12, "nodes": 150_030, "time": 0.2}])
    assert analysis.stopped_early(job(depth=12, nodes=150_000), finals)
    assert not analysis.stopped_early(job(depth=12, nodes=200_000), finals)
    assert not analysis.stopped_early(job(depth=12), finals)


# The publisher: its timing, with a stand-in for db.progress.publish
class Sent(NamedTuple):
    """One publication, as `Desk` took it."""

    run: uuid.UUID
    depth: int
    nodes: int | None
    elapsed: float | None
    lines: Sequence[ResultLine]
    began: float


class Desk:
    """Takes publications as `db.progress.publish` does and notes them (`sent`), and how
    many were on their way at once. One of a depth in `held` waits for `release`;
    `answer` says whether someone still watches; `failure`, when set, is raised."""

    def __init__(self, *, held: Sequence[int] = (), answer: bool = True) -> None:
        self.held = set(held)
        self.answer = answer
        self.failure: Exception | None = None
        self.release = asyncio.Event()
        self.sent: list[Sent] = []
        self.on_the_way = self.most_on_the_way = 0
        self.arrived: asyncio.Queue[int] = asyncio.Queue()

    async def __call__(
        self,
        run: uuid.UUID,
        *,
        depth: int,
        nodes: int | None,
        elapsed: float | None,
        lines: Sequence[ResultLine],
    ) -> bool:
        began = asyncio.get_running_loop().time()
        self.sent.append(Sent(run, depth, nodes, elapsed, lines, began))
        self.on_the_way += 1
        self.most_on_the_way = max(self.most_on_the_way, self.on_the_way)
        self.arrived.put_nowait(depth)
        try:
            if depth in self.held:
                await self.release.wait()
            if self.failure is not None:
                raise self.failure
            return self.answer
        finally:
            self.on_the_way -= 1

    @property
    def depths(self) -> list[int]:
        return [sent.depth for sent in self.sent]

    def gaps(self) -> list[float]:
        """Seconds between the beginnings of successive publications."""
        return [later.began - earlier.began for earlier, later in itertools.pairwise(self.sent)]

    async def next(self) -> int:
        """The depth of the next publication that begins (within 5 s)."""
        return await asyncio.wait_for(self.arrived.get(), 5)


def snapshot(depth: int) -> Snapshot:
    return Snapshot(depth=depth, nodes=depth * 1000, elapsed=depth / 100, reports=[])


async def test_publications_are_spaced_one_at_a_time_and_the_newest_waiting_wins() -> None:
    desk = Desk(held=[1])
    interval = 0.05
    watched = job(watched=True)
    publisher = Publisher(watched, desk, interval=interval)
    publisher.offer(snapshot(1))
    assert await desk.next() == 1
    # Depth 1 is on its way: later iterations wait, each replacing the one before.
    for depth in (2, 3, 4):
        publisher.offer(snapshot(depth))
    desk.release.set()
    assert await desk.next() == 4
    publisher.offer(snapshot(5))
    assert await desk.next() == 5
    assert desk.depths == [1, 4, 5]
    assert (desk.sent[1].nodes, desk.sent[1].elapsed) == (4000, 0.04)
    assert {sent.run for sent in desk.sent} == {watched.id}
    assert desk.most_on_the_way == 1
    assert all(gap >= interval - 0.001 for gap in desk.gaps()), desk.gaps()
    assert publisher.close() is None  # nothing on its way any more


async def test_nobody_watching_stops_the_publications_until_watched_again() -> None:
    desk = Desk(held=[1], answer=False)
    publisher = Publisher(job(watched=True), desk, interval=0.0)
    publisher.offer(snapshot(1))
    assert await desk.next() == 1
    publisher.offer(snapshot(2))
    desk.release.set()
    await asyncio.wait_for(until(lambda: not publisher.watching), 5)
    desk.answer = True
    publisher.watch()
    publisher.offer(snapshot(3))
    assert await desk.next() == 3
    assert desk.depths == [1, 3], "the iteration waiting when nobody watched is dropped"
    publisher.close()


async def test_a_failing_publication_is_logged_once_and_never_stops_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    desk = Desk()
    desk.failure = TransientDatabaseError("the database is away")
    publisher = Publisher(job(watched=True), desk, interval=0.0)
    with caplog.at_level(logging.WARNING, logger="engine.progress"):
        for depth in (1, 2, 3):
            publisher.offer(snapshot(depth))
            assert await desk.next() == depth
        await asyncio.wait_for(until(lambda: desk.on_the_way == 0), 5)
    assert publisher.watching
    assert len([r for r in caplog.records if r.name == "engine.progress"]) == 1
    publisher.close()


async def test_a_closed_job_drops_its_waiting_iteration_and_the_next_waits_for_its_last() -> None:
    desk = Desk(held=[1])
    first = Publisher(job(watched=True), desk, interval=0.0)
    first.offer(snapshot(1))
    assert await desk.next() == 1
    first.offer(snapshot(2))
    on_its_way = first.close()
    assert on_its_way is not None and not first.watching
    first.watch()
    assert not first.watching, "a closed job is never watched again"
    second = Publisher(job(watched=True), desk, interval=0.0, after=on_its_way)
    second.offer(snapshot(10))
    desk.release.set()
    assert await desk.next() == 10
    assert desk.depths == [1, 10] and desk.most_on_the_way == 1
    assert second.close() is None  # its publication went at once, and is over
    # A job whose next publication only waits for its turn leaves nothing on its way.
    third = Publisher(job(watched=True), desk, interval=60.0)
    third.offer(snapshot(20))
    assert await desk.next() == 20
    await asyncio.wait_for(until(lambda: desk.on_the_way == 0), 5)
    third.offer(snapshot(21))
    assert third.close() is None
    assert 21 not in desk.depths


async def until(condition: Any) -> None:
    """Return once `condition()` holds (callers bound the wait)."""
    while not condition():
        await asyncio.sleep(0.001)


class Offers(Publisher):
    """A publisher that keeps what it is offered, to see which reports end iterations."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__(job, Desk())
        self.offered: list[Snapshot] = []

    def offer(self, snapshot: Snapshot) -> None:
        self.offered.append(snapshot)

    def fed(self, stream: list[chess.engine.InfoDict]) -> list[Snapshot]:
        """What it offers, seeing `stream` as the report loop shows it."""
        reports = analysis.Reports()
        for report in stream:
            reports.see(report)
            self.see(report, reports)
        return self.offered


def info(rank: int, depth: int, moves: str = "e2e4", **extra: Any) -> chess.engine.InfoDict:
    value: dict[str, Any] = {
        "multipv": rank,
        "depth": depth,
        "score": chess.engine.PovScore(chess.engine.Cp(20), chess.WHITE),
        "nodes": depth * 100,
        "time": depth / 1000,
        "pv": [chess.Move.from_uci(move) for move in moves.split()],
        **extra,
    }
    return cast(chess.engine.InfoDict, value)


def test_an_iteration_ends_with_its_last_lines_report_at_a_new_depth() -> None:
    stream: list[chess.engine.InfoDict] = [
        cast(chess.engine.InfoDict, {"string": "NNUE evaluation enabled"}),
        info(1, 1), info(2, 1, "d2d4"),  # iteration 1
        info(1, 2), info(2, 2, "d2d4"),  # iteration 2
        cast(chess.engine.InfoDict, {"depth": 3, "currmove": chess.Move.from_uci("e2e4")}),
        # After a few seconds: every line after each one searched, the rest still at 2.
        info(1, 3), info(2, 2, "d2d4"),
        info(1, 3), info(2, 3, "d2d4", upperbound=True),  # a bound: not an iteration's end
        info(1, 3), info(2, 3, "d2d4"),  # iteration 3
    ]  # fmt: skip
    snapshots = Offers(job(lines=2, watched=True)).fed(stream)
    assert [snapshot.depth for snapshot in snapshots] == [1, 2, 3]
    assert (snapshots[-1].nodes, snapshots[-1].elapsed) == (300, 0.003)
    assert [report["depth"] for report in snapshots[-1].reports] == [3, 3]
    # With fewer legal moves than lines asked for, the last legal move's line ends them.
    two = [info(1, 1, "a1b2"), info(2, 1, "a1a2"), info(1, 2, "a1b2"), info(2, 2, "a1a2")]
    fewer = Offers(job(TWO_MOVES, lines=5, watched=True)).fed(two)
    assert [snapshot.depth for snapshot in fewer] == [1, 2]


async def test_a_watched_search_publishes_whole_iterations_spaced_out(engine: Stockfish) -> None:
    desk = Desk()
    watched = job(ITALIAN, lines=3, time_limit=1.0, watched=True)
    publisher = Publisher(watched, desk)
    analysed = await analysis.analyse(engine.protocol, watched, 10, publisher)
    on_its_way = publisher.close()
    if on_its_way is not None:
        await asyncio.wait_for(asyncio.wait({on_its_way}), 5)
    # At 0 s, 0.25 s, 0.5 s, 0.75 s and maybe 1 s.
    assert 3 <= len(desk.depths) <= 5, desk.depths
    assert desk.depths == sorted(set(desk.depths))
    # Spaced from when each began, before its lines were made: give or take a little.
    assert all(gap >= PUBLISH_INTERVAL - 0.005 for gap in desk.gaps()), desk.gaps()
    for sent in desk.sent:
        assert [line.rank for line in sent.lines] == [1, 2, 3]
        assert all(line.depth == sent.depth and line.pv_san and line.wdl for line in sent.lines)
    assert desk.depths[-1] <= min(line.depth for line in analysed.lines)


async def test_a_search_nobody_watches_publishes_nothing(engine: Stockfish) -> None:
    desk, unwatched = Desk(), job(ITALIAN, lines=2, depth=10)
    publisher = Publisher(unwatched, desk, interval=0.0)
    await analysis.analyse(engine.protocol, unwatched, 10, publisher)
    assert publisher.close() is None and desk.depths == []


# The worker: watched at the claim, by notification, by the heartbeat
WATCH = (
    "INSERT INTO analysis_progress (run_id, watched_until) VALUES ($1, now() + interval '1 minute')"
)


@pytest.fixture
async def progress_heard(database_url: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads of `analysis_progress` notifications, as they arrive."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    await listener.add_listener("analysis_progress", lambda *args: heard.put_nowait(args[3]))
    yield heard
    await listener.close()


async def test_a_run_watched_when_claimed_publishes_its_progress(
    database: AsyncEngine,
    pool: asyncpg.Pool,
    start_worker: WorkerFactory,
    progress_heard: asyncio.Queue[str],
) -> None:
    row = await store(database, request(chess.STARTING_FEN, moves=2, depth=16, time_limit=60))
    await pool.execute(WATCH, row.id)
    await start_worker(slots=1)
    assert await asyncio.wait_for(progress_heard.get(), 30) == str(row.id)
    done = await wait_terminal(database, row, timeout=60)
    assert done.status is AnalysisStatus.DONE
    state = (await published.read(pool, [row.id]))[row.id]
    assert 1 <= state.depth <= 16 and state.nodes and state.elapsed is not None
    assert [line.rank for line in state.lines] == [1, 2]
    assert all(line.depth == state.depth and line.pv_san and line.wdl for line in state.lines)


@pytest.mark.parametrize(
    ("told_by", "lease_seconds"),
    # The heartbeat renews every quarter lease (and once at the start): every 15 s when
    # the notification must tell, every 0.25 s when only the heartbeat can.
    [("notification", 60.0), ("heartbeat", 1.0)],
)
async def test_a_run_watched_while_it_runs_publishes_once_its_worker_is_told(
    database: AsyncEngine,
    pool: asyncpg.Pool,
    start_worker: WorkerFactory,
    progress_heard: asyncio.Queue[str],
    told_by: str,
    lease_seconds: float,
) -> None:
    worker = await start_worker(slots=1, lease_seconds=lease_seconds)
    row = await store(database, request(chess.STARTING_FEN, time_limit=2.0))
    async with asyncio.timeout(10):
        while not any(slot.job is not None and slot.job.id == row.id for slot in worker.slots):
            await asyncio.sleep(0.005)
    if told_by == "notification":
        await published.watch(pool, [row.id], 60)  # as an API process does: analysis_watch
    else:
        await pool.execute(WATCH, row.id)  # a watch whose notification was missed
    assert await asyncio.wait_for(progress_heard.get(), 1.5) == str(row.id)
    assert (await wait_terminal(database, row)).status is AnalysisStatus.DONE
