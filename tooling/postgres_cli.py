"""The `chess-analysis-postgres` command line: its usage, its arguments and its entry point.

`arguments` builds the parser (`start`, `stop [--force]`, `status`, `url`) with the usage
text shared by the project's commands; `main` runs the chosen command on the server under
`DB_DATA_DIR` through `tooling.embedded_postgres`, logging failures and returning the exit
status. `tooling.embedded_postgres.main` is the entry point that `pyproject.toml` names.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tooling.embedded_postgres import (
    EmbeddedServerError,
    cluster_dir,
    start,
    status,
    stop_unless_used,
)

# One logger for the whole embedded server, named as before the split into modules.
log = logging.getLogger("tooling.embedded_postgres")


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
