"""The record of who uses the embedded server, and the check of who is connected to it.

A process that serves with the server holds an exclusive `flock` on a file of its own in
`DB_DATA_DIR/.postgres.users/` (`_register`, `_unregister`); a file whose lock can be taken
is stale and removed (`_holders`). Clients connected to the server, whoever they are, are
counted from `pg_stat_activity` (`_connections`). `ServerUse` gathers both, and
`ServerInUseError` is how `stop` refuses while something uses the server.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tooling.postgres_server import (
    BIN_DIR,
    QUERY_TIMEOUT_SECONDS,
    SUPERUSER,
    USERS_DIR,
    EmbeddedServerError,
    _socket_dir,
)


class ServerInUseError(EmbeddedServerError):
    """`stop` was refused: processes or clients still use the server."""

    def __init__(self, message: str, use: ServerUse) -> None:
        super().__init__(message)
        self.use = use


@dataclass(frozen=True)
class Holder:
    """A process serving with the embedded server (`make run`, a test session)."""

    pid: int
    command: str
    """Its command line, as far as it fits on a line."""


@dataclass(frozen=True)
class ServerUse:
    """Who uses a running server."""

    holders: tuple[Holder, ...]
    """Processes serving with it (see `serving`)."""
    connections: tuple[tuple[str, int], ...]
    """Client connections open on it, counted by application name (the asker's excluded)."""

    @property
    def idle(self) -> bool:
        """True when nothing uses the server."""
        return not self.holders and not self.connections

    def lines(self) -> list[str]:
        """One line per holder, and one for the connections."""
        lines = [f"pid {holder.pid} serves with it: {holder.command}" for holder in self.holders]
        if self.connections:
            total = sum(count for _, count in self.connections)
            named = ", ".join(f"{name} ({count})" for name, count in self.connections)
            lines.append(f"{total} client connection{'s' if total > 1 else ''}: {named}")
        return lines


def _use(pgdata: Path) -> ServerUse:
    """Who uses the running server, with the lock held."""
    return ServerUse(_holders(pgdata.parent), _connections(_socket_dir(pgdata)))


def _register(state: Path) -> tuple[Path, IO[str]]:
    """A file naming this process, locked for as long as the process serves."""
    users = state / USERS_DIR
    users.mkdir(exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", dir=users)
    os.fchmod(descriptor, 0o644)  # readable by whoever asks who uses the server
    handle = os.fdopen(descriptor, "w")
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    json.dump({"pid": os.getpid(), "command": command[:200]}, handle)
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return Path(name), handle


def _unregister(registration: tuple[Path, IO[str]]) -> None:
    path, handle = registration
    path.unlink(missing_ok=True)
    handle.close()


def _holders(state: Path) -> tuple[Holder, ...]:
    """The processes serving with the server; stale files (their process gone) are removed."""
    holders: list[Holder] = []
    users = state / USERS_DIR
    for path in sorted(users.iterdir()) if users.is_dir() else []:
        try:
            handle = path.open()
        except FileNotFoundError:
            continue
        except PermissionError:  # another user's: taken for live, as it cannot be checked
            pid = path.name.partition("-")[0]
            holders.append(Holder(int(pid) if pid.isdigit() else 0, "(another user's process)"))
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holders.append(_holder(handle.read()))
                continue
            path.unlink(missing_ok=True)
    return tuple(holders)


def _holder(text: str) -> Holder:
    try:
        entry = json.loads(text)
        return Holder(int(entry["pid"]), str(entry["command"]))
    except (ValueError, KeyError, TypeError):
        return Holder(0, "(unreadable registration)")


def _connections(socket_dir: Path) -> tuple[tuple[str, int], ...]:
    """Client connections on the server, by application name, but for this one's own."""
    query = (
        "SELECT coalesce(nullif(application_name, ''), '(unnamed)'), count(*) "
        "FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
        "GROUP BY 1 ORDER BY 1"
    )
    command = [str(BIN_DIR / "psql"), "-X", "-q", "-A", "-t", "-F", "\t"]
    command += ["-h", str(socket_dir), "-U", SUPERUSER, "-d", "postgres", "-c", query]
    environment = {**os.environ, "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "chess-analysis-postgres"}
    try:
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=environment,
            timeout=QUERY_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedServerError("the server did not answer who is connected in time") from exc
    if completed.returncode != 0:
        raise EmbeddedServerError(
            f"cannot tell who is connected to the server: {completed.stderr.strip()}"
        )
    counts: list[tuple[str, int]] = []
    for line in completed.stdout.splitlines():
        name, _, count = line.rpartition("\t")
        if name:
            counts.append((name, int(count)))
    return tuple(counts)
