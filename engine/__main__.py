"""`python -m engine` (or `chess-analysis-worker`): run a worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import asyncpg
from pydantic import ValidationError

from db.session import create_engine, create_pool
from db.settings import MISSING_URL, DatabaseSettings
from engine.pool import EngineStartError
from engine.settings import EngineSettings, find_stockfish
from engine.worker import Worker
from runtime import logs, usage
from runtime.logs import LogSettings
from runtime.supervision import SupervisionError

log = logging.getLogger("engine")

DESCRIPTION = """\
Run a worker: claim queued analyses from PostgreSQL, run them on Stockfish (one engine per
slot) and write their results, until SIGTERM or Ctrl-C (running analyses get a grace period,
then go back to the queue). Needs DATABASE_URL, migrated with chess-analysis-migrate; starts
no database of its own. Run as many workers as you like on one database."""


def arguments() -> argparse.ArgumentParser:
    """The command line: `--help` only; every setting is an environment variable."""
    return usage.parser(
        "chess-analysis-worker",
        DESCRIPTION,
        [
            usage.Section(
                "worker (engine/settings.py)",
                EngineSettings,
                described=(
                    "stockfish_path",
                    "slots",
                    "hash_mb",
                    "grace_seconds",
                    "retention_days",
                    "metrics_port",
                ),
            ),
            usage.Section(
                "database (db/settings.py)",
                DatabaseSettings,
                described=("url", "pool_size", "connect_timeout"),
                hidden=("data_dir",),
            ),
            usage.Section("log (runtime/logs.py)", LogSettings),
        ],
    )


async def serve(engine_settings: EngineSettings, database_settings: DatabaseSettings) -> int:
    """Run one worker process; the exit status."""
    stockfish = find_stockfish(engine_settings.stockfish_path)
    if stockfish is None:
        log.error(
            "no Stockfish found (looked for %s): install it with `apt-get install stockfish` "
            "or set STOCKFISH_PATH",
            engine_settings.stockfish_path or "stockfish on PATH and in /usr/games",
        )
        return 2
    url = database_settings.url
    if not url:
        log.error(MISSING_URL)
        return 2
    database = create_engine(database_settings, url, application_name="chess-analysis-worker")
    try:
        queue_pool = await create_pool(
            database_settings, url, application_name="chess-analysis-worker", generic_plans=True
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        log.error("cannot reach the database: %s", exc)
        await database.dispose()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker = Worker(engine_settings, database, queue_pool, url, stockfish)
    if engine_settings.metrics_port is not None:
        worker.metrics.serve(engine_settings.metrics_port, engine_settings.metrics_host)
        log.info(
            "metrics on http://%s:%d/metrics",
            engine_settings.metrics_host,
            engine_settings.metrics_port,
        )
    try:
        await worker.run(stop)
    except EngineStartError as exc:
        log.error("%s", exc)
        return 2
    except SupervisionError as exc:
        log.critical("%s; stopping so that a fresh worker can take over", exc)
        return 1
    finally:
        await queue_pool.close()
        await database.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `chess-analysis-worker`."""
    arguments().parse_args(argv)
    try:
        logs.configure(LogSettings())
        engine_settings, database_settings = EngineSettings(), DatabaseSettings()
    except ValidationError as exc:
        log.error("invalid setting: %s", exc)
        return 2
    return asyncio.run(serve(engine_settings, database_settings))


if __name__ == "__main__":
    sys.exit(main())
