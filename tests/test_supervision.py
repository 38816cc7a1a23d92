"""Supervised duties outlive their errors: `supervise` alone, then a real worker whose
heartbeat and sweep meet real unexpected database errors (triggers that raise)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import chess
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db import errors, submissions
from db.errors import TransientDatabaseError
from db.models import Analysis, AnalysisStatus
from engine.worker import Worker
from runtime.supervision import BUGS_BEFORE_GIVING_UP, SupervisionError, supervise
from tests.conftest import WorkerFactory
from tests.rows import request, store, wait_terminal

SUPERVISION = "runtime.supervision"
QUICK = 0.001
"""A `most_delay` that keeps the unit tests fast: it caps every delay, the first too."""


class Failing:
    """A duty that raises each of `raises` in turn, then returns."""

    def __init__(self, *raises: Exception) -> None:
        self.raises = list(raises)
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.raises:
            raise self.raises.pop(0)


def supervision_records(
    caplog: pytest.LogCaptureFixture, duty: str, level: int
) -> list[logging.LogRecord]:
    """What `supervise` logged about `duty` at `level`."""
    return [
        record
        for record in caplog.records
        if record.name == SUPERVISION
        and record.levelno == level
        and record.getMessage().startswith(duty)
    ]


async def test_transient_errors_are_warnings_and_the_duty_starts_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    duty = Failing(TransientDatabaseError("database away"), TransientDatabaseError("again"))
    await asyncio.wait_for(
        supervise("poller", duty, transient=errors.is_transient, most_delay=QUICK), 5
    )
    assert duty.calls == 3
    warnings = supervision_records(caplog, "poller", logging.WARNING)
    assert [record.getMessage().split(";")[0] for record in warnings] == [
        "poller: database away",
        "poller: again",
    ]
    assert all(record.exc_info is None for record in warnings), "no traceback"
    assert not supervision_records(caplog, "poller", logging.ERROR)


async def test_an_unexpected_error_is_logged_with_its_traceback_and_the_duty_starts_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bug = ValueError("a bug")
    duty = Failing(bug)
    await asyncio.wait_for(
        supervise("poller", duty, transient=errors.is_transient, most_delay=QUICK), 5
    )
    assert duty.calls == 2
    [record] = supervision_records(caplog, "poller", logging.ERROR)
    assert record.exc_info is not None and record.exc_info[1] is bug
    assert f"unexpected error (1 of {BUGS_BEFORE_GIVING_UP} in a row)" in record.getMessage()


async def test_a_duty_that_keeps_failing_with_bugs_is_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    duty = Failing(*(ValueError(f"bug {number}") for number in range(1, 10)))
    with pytest.raises(SupervisionError, match="poller failed 3 times in a row") as raised:
        await asyncio.wait_for(
            supervise("poller", duty, most_delay=QUICK, bugs_before_giving_up=3), 5
        )
    assert duty.calls == 3
    assert str(raised.value.__cause__) == "bug 3"
    logged = supervision_records(caplog, "poller", logging.ERROR)
    assert [record.getMessage().split("(")[1].split(")")[0] for record in logged] == [
        "1 of 3 in a row",
        "2 of 3 in a row",
        "3 of 3 in a row",
    ]


async def test_transient_errors_do_not_count_towards_giving_up() -> None:
    duty = Failing(
        ValueError("bug 1"), TransientDatabaseError("away"), ValueError("bug 2"), KeyError("x")
    )
    with pytest.raises(SupervisionError, match="failed 3 times"):
        await asyncio.wait_for(
            supervise(
                "poller",
                duty,
                transient=errors.is_transient,
                most_delay=QUICK,
                bugs_before_giving_up=3,
            ),
            5,
        )
    assert duty.calls == 4


async def test_cancellation_stops_a_running_duty_without_a_restart() -> None:
    started = asyncio.Event()
    calls = 0

    async def duty() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("poller", duty))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert calls == 1


async def test_cancellation_during_the_backoff_stops_without_a_restart() -> None:
    duty = Failing(ValueError("a bug"))
    judged = asyncio.Event()

    def transient(_exc: BaseException) -> bool:
        judged.set()
        return False

    task = asyncio.create_task(supervise("poller", duty, transient=transient, most_delay=60))
    # `supervise` runs on from the judgement to its backoff's sleep before this wakes.
    await asyncio.wait_for(judged.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert duty.calls == 1


# A real worker, real database errors.

LEASE_SECONDS = 2.0
"""The heartbeat renews every 0.5 s; one missed beat (plus a restart) stays well inside."""


@dataclass(frozen=True)
class Fault:
    """A trigger that raises `injected fault` (SQLSTATE P0001, a bug as far as
    `db.errors` can tell) the first `times` times it fires, then lets statements by."""

    name: str
    times: int

    async def calls(self, pool: asyncpg.Pool) -> int:
        """How often the trigger has fired, failing or not."""
        called = await pool.fetchrow(f"SELECT last_value, is_called FROM {self.name}_calls")
        return int(called["last_value"]) if called["is_called"] else 0


async def inject_fault(
    pool: asyncpg.Pool, name: str, *, times: int, before: str, when: str = "true"
) -> Fault:
    """Make statements that fire `BEFORE {before} … WHEN ({when})` fail `times` times."""
    await pool.execute(
        f"""
        -- a sequence counts the calls: a counter row would be rolled back with the
        -- statement the fault aborts, and the fault would never clear
        CREATE SEQUENCE {name}_calls;
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF nextval('{name}_calls') <= {times} THEN
                RAISE EXCEPTION 'injected fault: % on %', TG_OP, TG_TABLE_NAME;
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER {name} BEFORE {before}
            FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}();
        """
    )
    return Fault(name, times)


async def eventually(check: Callable[[], object], timeout: float = 10) -> None:
    """Poll `check` (sync or async) until it holds, for at most `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


async def running(database: AsyncEngine, row: Analysis) -> Analysis:
    """The row once a worker runs it."""
    found: list[Analysis] = []

    async def is_running() -> bool:
        current = await submissions.get(database, row.id)
        assert current is not None
        found[:] = [current]
        return current.status is AnalysisStatus.RUNNING

    await eventually(is_running)
    return found[0]


async def lease_of(database: AsyncEngine, row: Analysis) -> datetime:
    current = await submissions.get(database, row.id)
    assert current is not None and current.lease_expires_at is not None
    return current.lease_expires_at


def run_task(worker: Worker) -> asyncio.Task[object] | None:
    """The task running `worker.run`, if it still runs (the fixture keeps it to itself)."""
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is not None and frame.f_locals.get("self") is worker:
            return task
    return None


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of the driver's error behind `exc` (SQLAlchemy wraps it twice)."""
    while exc is not None and getattr(exc, "sqlstate", None) is None:
        exc = exc.__cause__
    return None if exc is None else str(getattr(exc, "sqlstate", None))


def assert_logged_as_bugs(records: list[logging.LogRecord], duty: str) -> None:
    """Each record is an unexpected error of `duty`, with the injected fault's traceback."""
    for number, record in enumerate(records, start=1):
        message = record.getMessage()
        assert message.startswith(
            f"{duty} failed with an unexpected error ({number} of {BUGS_BEFORE_GIVING_UP} in a row)"
        )
        assert record.exc_info is not None and record.exc_info[1] is not None
        assert "injected fault" in str(record.exc_info[1])
        assert sqlstate(record.exc_info[1]) == "P0001"  # raise_exception
        assert not errors.is_transient(record.exc_info[1])


async def assert_kept_and_running(
    database: AsyncEngine, row: Analysis, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    """`row` ends done by `worker` on its first claim (its lease never lapsed), and the
    worker and its duties still run."""
    done = await wait_terminal(database, row)
    assert (done.status, done.attempts, done.worker_id) == (AnalysisStatus.DONE, 1, worker.id)
    assert done.error is None
    taken_back = [
        record
        for record in caplog.records
        if record.name == "engine.worker" and record.getMessage().startswith("took back")
    ]
    assert not taken_back
    task = run_task(worker)
    assert task is not None and not task.done(), "the worker still runs"
    alive = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
    assert {"heartbeat", "sweep"} <= alive, "each duty's supervising task never ended"


async def test_a_heartbeat_that_meets_an_unexpected_error_restarts_and_keeps_its_leases(
    database: AsyncEngine,
    pool: asyncpg.Pool,
    start_worker: WorkerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    worker = await start_worker(slots=1, lease_seconds=LEASE_SECONDS, sweep_interval=0.2)
    row = await store(database, request(chess.STARTING_FEN, time_limit=4.0))
    await running(database, row)
    # The next renewal fails; the one after it succeeds, but the worker's row it writes
    # next fails once: both halves of a beat, one after the other.
    renewal = await inject_fault(
        pool,
        "fault_renewal",
        times=1,
        before="UPDATE OF lease_expires_at ON analyses",
        when="OLD.status = 'running' AND NEW.status = 'running'",
    )
    announce = await inject_fault(
        pool, "fault_announce", times=1, before="UPDATE ON workers", when=f"OLD.id = '{worker.id}'"
    )

    await eventually(lambda: len(supervision_records(caplog, "heartbeat", logging.ERROR)) == 2)
    failures = supervision_records(caplog, "heartbeat", logging.ERROR)
    assert_logged_as_bugs(failures, "heartbeat")
    assert "injected fault: UPDATE on analyses" in str(failures[0].exc_info)
    assert "injected fault: UPDATE on workers" in str(failures[1].exc_info)

    # Started again: later beats renew the lease and refresh the worker's row.
    lease_after_faults = await lease_of(database, row)
    seen = await pool.fetchval("SELECT last_seen_at FROM workers WHERE id = $1", worker.id)

    async def beaten_again() -> bool:
        seen_now = await pool.fetchval("SELECT last_seen_at FROM workers WHERE id = $1", worker.id)
        return await lease_of(database, row) > lease_after_faults and seen_now > seen

    await eventually(beaten_again, timeout=3 * LEASE_SECONDS)
    assert await renewal.calls(pool) > renewal.times
    assert await announce.calls(pool) > announce.times

    await assert_kept_and_running(database, row, worker, caplog)
    assert len(supervision_records(caplog, "heartbeat", logging.ERROR)) == 2


async def test_a_sweep_that_meets_an_unexpected_error_restarts_and_sweeps_again(
    database: AsyncEngine,
    pool: asyncpg.Pool,
    start_worker: WorkerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    worker = await start_worker(slots=1, lease_seconds=LEASE_SECONDS, sweep_interval=0.2)
    row = await store(database, request(chess.STARTING_FEN, time_limit=3.0))
    await running(database, row)
    # A worker that died long ago: removing its row fails twice, then works.
    removal = await inject_fault(
        pool, "fault_removal", times=2, before="DELETE ON workers", when="OLD.id = 'vanished'"
    )
    await pool.execute(
        """
        INSERT INTO workers (id, host, pid, slots, engine, expires_at)
        VALUES ('vanished', 'elsewhere', 1, 1, 'Stockfish', now() - interval '1 minute')
        """
    )

    async def removed() -> bool:
        return int(await pool.fetchval("SELECT count(*) FROM workers WHERE id = 'vanished'")) == 0

    await eventually(removed, timeout=3 * LEASE_SECONDS)
    failures = supervision_records(caplog, "sweep", logging.ERROR)
    assert len(failures) == 2
    assert_logged_as_bugs(failures, "sweep")
    assert await removal.calls(pool) == 3, "two failed sweeps, then one that removed the row"
    removal_logged = "worker vanished stopped sending heartbeats; row removed"
    assert any(record.getMessage() == removal_logged for record in caplog.records)

    await assert_kept_and_running(database, row, worker, caplog)
