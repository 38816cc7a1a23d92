"""Game reviews: one 80-ply game at a fixed depth through the service, against a bare
python-chess loop over the same 81 positions (the start, and after each move).

- The bare engine: one Stockfish (one thread, the workers' hash, `UCI_ShowWDL`, a new
  game per position, `Limit(depth=…)`) analyses the positions one after the other: each
  position's time, and what the engine reported of its search (seconds, nodes). Then two
  such engines take the positions from one list in order of ply, as the service's slots
  take them from the queue: the wall time the machine itself allows two engines.
- The service, twice, each on a fresh database: one worker with 2 slots, then two workers
  with 1 slot each. The game is submitted over HTTP (`submitGameAnalysis`) and followed
  with `gameAnalysisProgress` over graphql-transport-ws (the WebSocket is open before the
  mutation goes out; the subscription starts once its answer has the game's id): the
  wall time runs from sending the mutation to reading the event that says `DONE`.
- The same game again to the same service, a few times: the time to each `DONE` answer
  (`progress.done == total`, the sides summed up), and the engine searches meanwhile.

Where a run's time went (`beyond`) is read from its positions' rows (PostgreSQL's `now()`
and `time.time()` are one clock), who used the cores from /proc (`cpu_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import chess
import chess.engine
import chess.pgn
import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench import services
from bench.databases import scratch
from db import migrations
from db.settings import asyncpg_dsn
from engine.settings import EngineSettings, find_stockfish

GAME = """[Event "World Championship"]
[Site "Moscow"]
[Round "16"]
[White "Karpov, Anatoly"]
[Black "Kasparov, Garry"]
[Result "0-1"]

1. e4 c5 2. Nf3 e6 3. d4 cxd4 4. Nxd4 Nc6 5. Nb5 d6 6. c4 Nf6 7. N1c3 a6 8. Na3 d5
9. cxd5 exd5 10. exd5 Nb4 11. Be2 Bc5 12. O-O O-O 13. Bf3 Bf5 14. Bg5 Re8 15. Qd2 b5
16. Rad1 Nd3 17. Nab1 h6 18. Bh4 b4 19. Na4 Bd6 20. Bg3 Rc8 21. b3 g5 22. Bxd6 Qxd6
23. g3 Nd7 24. Bg2 Qf6 25. a3 a5 26. axb4 axb4 27. Qa2 Bg6 28. d6 g4 29. Qd2 Kg7
30. f3 Qxd6 31. fxg4 Qd4+ 32. Kh1 Nf6 33. Rf4 Ne4 34. Qxd3 Nf2+ 35. Rxf2 Bxd3
36. Rfd2 Qe3 37. Rxd3 Rc1 38. Nb2 Qf2 39. Nd2 Rxd1+ 40. Nxd1 Re1+ 0-1
"""
"""Karpov-Kasparov, World Championship 1985, game 16 (the knight on d3): 80 plies,
White resigned."""
DEPTH = 18
TIME_LIMIT = 60.0
"""The API's most: the depth limit ends every search."""
SLOTS = 2
RESUBMISSIONS = 5
TIMEOUT_SECONDS = 600
GAME_FIELDS = "id status progress { done total } white { accuracy acpl } black { accuracy acpl }"
SUBMIT = f"""mutation($pgn: String!, $depth: Int!, $time: Float!) {{
  submitGameAnalysis(input: {{pgn: $pgn, depthLimit: $depth, timeLimit: $time}}) {{
    {GAME_FIELDS} }} }}"""
FOLLOW = f"subscription($id: ID!) {{ gameAnalysisProgress(id: $id) {{ {GAME_FIELDS} }} }}"
SEARCHES = "SELECT count(*) FROM analyses WHERE started_at IS NOT NULL AND NOT follows"
POSITIONS = """
    SELECT extract(epoch FROM a.started_at)::float8 AS started,
           extract(epoch FROM a.finished_at)::float8 AS finished,
           c.seconds, c.nodes  -- what the engine reported of its search
      FROM analyses a JOIN position_cache c
           ON c.position_key = a.position_key AND c.lines = a.num_moves_to_return
     WHERE a.game_id = $1 ORDER BY a.ply
    """


@dataclass(frozen=True)
class Bare:
    """The positions through a bare python-chess loop."""

    seconds: list[float]
    """Each position's `analyse` call, by ply, one engine alone."""
    engine_seconds: list[float]
    """What the engine reported of each search (its last `time`)."""
    nodes: list[int]
    parallel_seconds: float
    """Two engines taking the positions from one list in order of ply: the wall time."""
    parallel_engine_seconds: float
    """The searches' reported times in that run, summed (two engines at once)."""


@dataclass(frozen=True)
class Again:
    """The same game submitted again to a service that has analysed it."""

    seconds: list[float]
    """Each submission, from sending the mutation to reading its answer."""
    all_done: bool
    """Every answer `DONE`, all positions done, both sides summed up."""
    searches: int
    """Engine searches that ran meanwhile (0 expected)."""


@dataclass(frozen=True)
class Review:
    """The game through the service, and where the time went."""

    workers: int
    slots_per_worker: int
    wall_seconds: float
    """Sending the mutation to reading the `DONE` event."""
    events: int
    """`gameAnalysisProgress` events, the last one `DONE`."""
    searches: int
    waited_seconds: float
    """Sending the mutation to the first position claimed."""
    span_seconds: float
    """The first position claimed to the last one finished."""
    told_seconds: float
    """The last position finished to reading the `DONE` event."""
    busy_seconds: float
    """The positions' claim-to-end times, summed: what the slots spent on them."""
    engine_seconds: float
    """The engine's own search times (as it reported them), summed."""
    idle_queued_seconds: float
    """Slot-seconds without a position in the span, while some were not yet claimed."""
    idle_tail_seconds: float
    """Slot-seconds without a position after the last one was claimed."""
    beyond_engines_seconds: float
    """The wall time beyond the engines' own search times divided by the slots: what the
    service costs, measured in the run itself (whatever the machine's speed that minute)."""
    same_nodes: bool
    """Every position searched with as many nodes as by the bare engine: the same work."""
    cpu_seconds: dict[str, float]
    """CPU time spent from the mutation to the `DONE` event, by whom (`cpu_seconds`)."""
    again: Again


@dataclass(frozen=True)
class GameReviews:
    """The scenario's figures: the yardsticks, the two runs, and their ratios."""

    plies: int
    depth: int
    slots: int
    bare: Bare
    one_worker: Review
    """One worker process with `slots` slots."""
    two_workers: Review
    """`slots` worker processes with one slot each."""

    @property
    def bare_sum_seconds(self) -> float:
        """The bare engine's times for the positions, summed."""
        return sum(self.bare.seconds)

    @property
    def ideal_seconds(self) -> float:
        """The bare sum divided by the slots: the target's yardstick."""
        return self.bare_sum_seconds / self.slots

    @property
    def ratio_one_worker(self) -> float:
        return self.one_worker.wall_seconds / self.ideal_seconds

    @property
    def ratio_two_workers(self) -> float:
        return self.two_workers.wall_seconds / self.ideal_seconds

    @property
    def ratio_bare_parallel(self) -> float:
        """Two bare engines in parallel against the same yardstick: the machine's share."""
        return self.bare.parallel_seconds / self.ideal_seconds

    @property
    def beyond_ideal(self) -> dict[str, dict[str, float]]:
        """Each run's wall time beyond `ideal_seconds`, in seconds, part by part."""
        return {
            "one_worker": beyond(self.one_worker, self.bare, self.slots),
            "two_workers": beyond(self.two_workers, self.bare, self.slots),
        }


def beyond(run: Review, bare_run: Bare, slots: int) -> dict[str, float]:
    """Where `run` spent its wall time beyond the bare sum divided by the slots; the parts
    add up to the whole (while no more positions run at once than there are slots):

    - `waited` and `told`: the mutation to the first claim, the last end to `DONE`;
    - `idle_queued` and `idle_tail`: slot-seconds without a search, per slot;
    - `per_position`: the slots' time around each search (claim, result, the engine's
      new game) beyond the bare loop's time around it, per slot;
    - `contention`: the engine's own search times beyond the bare engine's (two engines
      at once on the machine's cores, and the service beside them), per slot.
    """
    bare_engine = sum(bare_run.engine_seconds)
    around = (run.busy_seconds - run.engine_seconds) - (sum(bare_run.seconds) - bare_engine)
    return {
        "total": run.wall_seconds - sum(bare_run.seconds) / slots,
        "waited": run.waited_seconds,
        "idle_queued": run.idle_queued_seconds / slots,
        "idle_tail": run.idle_tail_seconds / slots,
        "per_position": around / slots,
        "contention": (run.engine_seconds - bare_engine) / slots,
        "told": run.told_seconds,
    }


def boards(pgn: str = GAME) -> list[chess.Board]:
    """The game's positions: the start, then after each move."""
    game = chess.pgn.read_game(io.StringIO(pgn))
    assert game is not None and not game.errors, pgn
    board = game.board()
    found = [board.copy()]
    for move in game.mainline_moves():
        board.push(move)
        found.append(board.copy())
    return found


async def started_engine() -> chess.engine.UciProtocol:
    """One Stockfish configured as a worker's slot configures its own."""
    path = find_stockfish(None)
    assert path is not None, "no Stockfish"
    _, protocol = await chess.engine.popen_uci(str(path))
    await protocol.configure({"Threads": 1, "Hash": EngineSettings().hash_mb, "UCI_ShowWDL": True})
    return protocol


async def search(
    protocol: chess.engine.UciProtocol, board: chess.Board, depth: int
) -> chess.engine.InfoDict:
    """One position as a game of its own: the engine's final report."""
    return await protocol.analyse(board, chess.engine.Limit(depth=depth), game=uuid.uuid4())


async def bare(positions: list[chess.Board], depth: int, engines: int) -> Bare:
    """The positions one after the other on one engine, then on `engines` at once."""
    protocol = await started_engine()
    seconds: list[float] = []
    reports = []
    try:
        for board in positions:
            started = time.perf_counter()
            reports.append(await search(protocol, board, depth))
            seconds.append(time.perf_counter() - started)
    finally:
        await protocol.quit()
    pending = deque(positions)
    parallel_engine_seconds = 0.0

    async def loop() -> None:
        nonlocal parallel_engine_seconds
        engine = await started_engine()
        try:
            while pending:
                report = await search(engine, pending.popleft(), depth)
                parallel_engine_seconds += report.get("time", 0.0)
        finally:
            await engine.quit()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(loop() for _ in range(engines))), TIMEOUT_SECONDS)
    return Bare(
        seconds=seconds,
        engine_seconds=[float(report.get("time", 0.0)) for report in reports],
        nodes=[int(report.get("nodes", 0)) for report in reports],
        parallel_seconds=time.perf_counter() - started,
        parallel_engine_seconds=parallel_engine_seconds,
    )


def cpu_seconds() -> dict[str, float]:
    """CPU time so far, all cores, by role: the engines and worker processes this
    benchmark started, its API, itself, PostgreSQL (every `postgres` process), the rest
    of the machine (`other`: the kernel, whatever else runs beside the benchmark), and
    the time the hypervisor gave to others (`steal`)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = [int(number) for number in Path("/proc/stat").read_text().split()[1:9]]
    used = dict.fromkeys(("engines", "workers", "api", "bench", "postgres"), 0.0)
    processes: dict[int, tuple[int, str, float]] = {}  # pid: parent, name, CPU seconds
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(") ", 1)[1]
            ppid, *_, user, system = fields.split()[1:13]  # ppid to utime, stime
            processes[int(stat.parent.name)] = (int(ppid), name, (int(user) + int(system)) / tick)
    bench = os.getpid()
    for pid, (parent, name, seconds) in processes.items():
        grandparent = processes.get(parent, (0, "", 0.0))[0]
        if pid == bench:
            used["bench"] += seconds
        elif name == "postgres":
            used["postgres"] += seconds
        elif parent == bench:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            used["api" if b"api" in command else "workers"] += seconds
        elif grandparent == bench:
            used["engines"] += seconds
    used["other"] = (sum(total[:7]) - total[3] - total[4]) / tick - sum(used.values())
    used["steal"] = total[7] / tick  # taken by the hypervisor: busy, but not here
    return used


async def receive(socket: ClientConnection) -> dict[str, Any]:
    """The next message that is not a ping (answered)."""
    while True:
        message: dict[str, Any] = json.loads(await socket.recv())
        if message["type"] != "ping":
            return message
        await socket.send(json.dumps({"type": "pong"}))


async def submit(http: httpx.AsyncClient, endpoint: str, depth: int) -> dict[str, Any]:
    variables = {"pgn": GAME, "depth": depth, "time": TIME_LIMIT}
    response = await http.post(endpoint, json={"query": SUBMIT, "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["submitGameAnalysis"]
    return answer


async def follow(
    http: httpx.AsyncClient, port: int, depth: int
) -> tuple[uuid.UUID, float, float, int, dict[str, float]]:
    """Submit the game and follow it to `DONE`: its id, the epoch time the mutation went
    out, the seconds to the `DONE` event, the events read, and the CPU time spent
    meanwhile."""
    async with connect(
        f"ws://127.0.0.1:{port}/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init"}))
        assert (await receive(socket))["type"] == "connection_ack"
        cpu = cpu_seconds()
        sent_at, started = time.time(), time.perf_counter()
        game = await submit(http, f"http://127.0.0.1:{port}/graphql", depth)
        payload = {"query": FOLLOW, "variables": {"id": game["id"]}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        events = 0
        while True:
            message = await receive(socket)
            assert message["type"] == "next", message
            events += 1
            if message["payload"]["data"]["gameAnalysisProgress"]["status"] == "DONE":
                wall = time.perf_counter() - started
                spent = {role: used - cpu[role] for role, used in cpu_seconds().items()}
                return uuid.UUID(game["id"]), sent_at, wall, events, spent


async def again(
    http: httpx.AsyncClient, endpoint: str, connection: asyncpg.Connection, depth: int, plies: int
) -> Again:
    """The game submitted `RESUBMISSIONS` times more, one after the other."""
    searches = int(await connection.fetchval(SEARCHES))
    times: list[float] = []
    all_done = True
    for _ in range(RESUBMISSIONS):
        started = time.perf_counter()
        answer = await submit(http, endpoint, depth)
        times.append(time.perf_counter() - started)
        all_done &= (
            answer["status"] == "DONE"
            and answer["progress"] == {"done": plies + 1, "total": plies + 1}
            and None not in (answer["white"], answer["black"])
        )
    return Again(times, all_done, int(await connection.fetchval(SEARCHES)) - searches)


def idle(spans: list[tuple[float, float]], slots: int) -> tuple[float, float]:
    """Slot-seconds without a search from the first start to the last end: before the
    last start (positions still queued), and after it (nothing left to claim)."""
    last_start = max(started for started, _ in spans)
    moments = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans])
    queued = tail = 0.0
    running, previous = 0, moments[0][0]
    for moment, change in moments:
        free = max(slots - running, 0) * (moment - previous)
        if moment <= last_start:
            queued += free
        else:
            tail += free
        running, previous = running + change, moment
    return queued, tail


async def review(
    server_url: str, log_dir: Path, bare_run: Bare, *, workers: int, slots: int, depth: int
) -> Review:
    """The game through a fresh service of `workers` workers with `slots` slots each,
    then submitted again."""
    async with scratch(server_url, f"games{workers}x{slots}") as url:
        await asyncio.to_thread(migrations.upgrade, url)
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            async with (
                services.running(url, log_dir, workers=workers, slots=slots) as (port, _),
                httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http,
            ):
                game_id, sent_at, wall, events, cpu = await asyncio.wait_for(
                    follow(http, port, depth), TIMEOUT_SECONDS
                )
                searches = int(await connection.fetchval(SEARCHES))
                endpoint = f"http://127.0.0.1:{port}/graphql"
                plies = len(bare_run.seconds) - 1
                repeated = await again(http, endpoint, connection, depth, plies)
            rows = await connection.fetch(POSITIONS, game_id)
        finally:
            await connection.close()
    spans = [(row["started"], row["finished"]) for row in rows]
    first_start = min(started for started, _ in spans)
    last_end = max(finished for _, finished in spans)
    idle_queued, idle_tail = idle(spans, workers * slots)
    return Review(
        workers=workers,
        slots_per_worker=slots,
        wall_seconds=wall,
        events=events,
        searches=searches,
        waited_seconds=first_start - sent_at,
        span_seconds=last_end - first_start,
        told_seconds=sent_at + wall - last_end,
        busy_seconds=sum(finished - started for started, finished in spans),
        engine_seconds=sum(row["seconds"] for row in rows),
        idle_queued_seconds=idle_queued,
        idle_tail_seconds=idle_tail,
        beyond_engines_seconds=wall - sum(row["seconds"] for row in rows) / (workers * slots),
        same_nodes=[row["nodes"] for row in rows] == bare_run.nodes,
        cpu_seconds=cpu,
        again=repeated,
    )


async def run(server_url: str, log_dir: Path, depth: int = DEPTH) -> GameReviews:
    """The bare loops, then the service with one worker of `SLOTS` slots, then with
    `SLOTS` workers of one slot."""
    positions = boards()
    bare_run = await bare(positions, depth, SLOTS)
    one = await review(server_url, log_dir, bare_run, workers=1, slots=SLOTS, depth=depth)
    two = await review(server_url, log_dir, bare_run, workers=SLOTS, slots=1, depth=depth)
    return GameReviews(len(positions) - 1, depth, SLOTS, bare_run, one, two)
