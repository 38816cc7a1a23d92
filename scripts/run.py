"""`make run`: the whole service on one machine, stopped cleanly by Ctrl-C or SIGTERM.

Starts the embedded PostgreSQL when DATABASE_URL is unset, applies the migrations,
then runs one API process and one worker process until told to stop. On the way out
the API and the worker stop first (the worker finishes what it runs), then the
embedded server, if this script started it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from api.settings import ApiSettings
from db import migrations
from db.settings import DatabaseSettings
from runtime import logs
from tooling import embedded_postgres

STOP_TIMEOUT_SECONDS = 30
log = logging.getLogger("run")


def main() -> int:
    # People read this log in a terminal: text, unless asked otherwise.
    os.environ.setdefault("LOG_FORMAT", "text")
    logs.configure(logs.LogSettings())
    database_settings = DatabaseSettings()
    with embedded_postgres.serving(database_settings.url, database_settings.data_dir) as url:
        if not database_settings.url:  # a configured URL may hold a password: not logged
            log.info("embedded PostgreSQL: %s", url)
        return serve(url)


def serve(url: str) -> int:
    """Migrate, then run a worker and an API until a signal; stop them in order."""
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("%s: stopping", signal.Signals(signum).name)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children: list[subprocess.Popen[bytes]] = []
    try:
        migrations.upgrade(url)
        env = {**os.environ, "DATABASE_URL": url}
        # Own sessions: a Ctrl-C reaches this script only, which stops the children in order.
        for module in ("engine", "api"):
            children.append(
                subprocess.Popen([sys.executable, "-m", module], env=env, start_new_session=True)
            )
        settings = ApiSettings()
        graphiql = f"http://localhost:{settings.port}/graphql"
        print(f"\n  GraphiQL: {graphiql}   (Ctrl-C to stop)\n", flush=True)
        while not stopping:
            exited = [child for child in children if child.poll() is not None]
            if exited:
                log.error("%s exited with %s", exited[0].args, exited[0].returncode)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %d s; killing it", child.args, STOP_TIMEOUT_SECONDS)
                child.kill()
                child.wait()


if __name__ == "__main__":
    sys.exit(main())
