"""`chess-analysis-keys`: create, list and revoke the API keys that tenants call with.

A key's secret is printed once, when it is created (only its SHA-256 is stored): on
stdout alone, so that `KEY=$(chess-analysis-keys create my-app)` keeps it, with how to
use it on stderr. Without DATABASE_URL, the command works on the embedded PostgreSQL
under DB_DATA_DIR (the one `make run` uses), started for the command if it is not
running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

import asyncpg

from db import errors, tenants
from db.session import create_pool
from db.settings import DatabaseSettings

log = logging.getLogger("chess-analysis-keys")

DESCRIPTION = """\
Create, list and revoke API keys. A request to the API shows its key as an HTTP header,
`Authorization: Bearer <key>` (on a WebSocket, also as the connection_init payload
{"authorization": "Bearer <key>"}). Only a hash of each key is stored: its secret is
printed once, by `create`, and cannot be shown again.

Without DATABASE_URL, the embedded PostgreSQL under DB_DATA_DIR (the one `make run`
uses) is started for the command if it does not run, and stopped afterwards."""


def positive_integer(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_number(text: str) -> float:
    """An argument that must be a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def key_name(text: str) -> str:
    """A key's name: something to tell it by, without spaces at its ends."""
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"a name without spaces at its ends, not {text!r}")
    return text


def arguments() -> argparse.ArgumentParser:
    """`chess-analysis-keys create NAME [options] | list | revoke NAME`."""
    from runtime import usage

    parser = usage.parser(
        "chess-analysis-keys",
        DESCRIPTION,
        [
            usage.Section(
                "database (db/settings.py)",
                DatabaseSettings,
                described=("url", "data_dir"),
                hidden=("pool_size", "max_overflow", "connect_timeout"),
            )
        ],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    creating = commands.add_parser(
        "create",
        help="create a key and print its secret (once)",
        description="Create a key named NAME and print its secret on stdout, once; how to "
        "use it goes to stderr. Quotas left out are unlimited.",
    )
    creating.add_argument("name", type=key_name, metavar="NAME", help="what to call the key")
    creating.add_argument(
        "--admin",
        action="store_true",
        help="may see and cancel everyone's work, the workers and /metrics",
    )
    creating.add_argument(
        "--max-queued",
        type=positive_integer,
        metavar="N",
        help="analyses it may have waiting at once (QUOTA_EXCEEDED beyond)",
    )
    creating.add_argument(
        "--engine-seconds-per-hour",
        type=positive_number,
        metavar="S",
        help="engine seconds (the sum of its time limits) per hour, with a burst of as "
        "many at once (RATE_LIMITED beyond)",
    )
    creating.add_argument(
        "--weight",
        type=positive_number,
        default=1.0,
        metavar="W",
        help="its share of the workers while others have work waiting too (default: 1)",
    )
    commands.add_parser(
        "list",
        help="every key: name, scopes, quotas, created, revoked (never a secret)",
        description="List every key, revoked ones included: name, scopes, quotas, when it "
        "was created and revoked. Secrets are not stored, so never shown.",
    )
    revoking = commands.add_parser(
        "revoke",
        help="revoke a key: requests with it are refused within seconds",
        description="Revoke the key named NAME: the API refuses it once its cache of keys "
        "expires (API_KEY_CACHE_SECONDS). Its work already queued still runs.",
    )
    revoking.add_argument("name", metavar="NAME", help="the key's name")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `chess-analysis-keys`."""
    from tooling import embedded_postgres

    options = arguments().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    settings = DatabaseSettings()
    try:
        with embedded_postgres.serving(settings.url, settings.data_dir) as url:
            return asyncio.run(run(options, settings, url))
    except embedded_postgres.EmbeddedServerError as exc:
        log.error("%s", exc)
        return 1


async def run(options: argparse.Namespace, settings: DatabaseSettings, url: str) -> int:
    """Carry out the command on the database at `url`; the exit status."""
    try:
        pool = await create_pool(
            settings.model_copy(update={"pool_size": 1}), url, application_name="keys"
        )
    except Exception as exc:
        log.error("cannot connect to the database: %s", errors.translate(exc))
        return 1
    try:
        command = {"create": create, "list": list_keys, "revoke": revoke}[options.command]
        return await command(pool, options)
    except asyncpg.UndefinedTableError:
        log.error("this database has no api_keys table: run `chess-analysis-migrate` first")
        return 1
    except errors.DatabaseError as exc:
        log.error("%s", exc)
        return 1
    finally:
        await pool.close()


async def create(pool: asyncpg.Pool, options: argparse.Namespace) -> int:
    quotas = tenants.Quotas(
        max_queued=options.max_queued,
        engine_seconds_per_hour=options.engine_seconds_per_hour,
        weight=options.weight,
    )
    try:
        tenant, secret = await tenants.create(
            pool, options.name, admin=options.admin, quotas=quotas
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 1
    sys.stdout.write(secret + "\n")
    sys.stdout.flush()
    log.info(
        "\n".join(
            [
                f"created key {tenant.name!r}: {describe(tenant)}",
                "The line above is its secret, shown this once (only its hash is stored).",
                f"Send it with every request:  Authorization: Bearer {secret}",
                "(on a WebSocket, also as the connection_init payload "
                f'{{"authorization": "Bearer {secret}"}})',
            ]
        )
    )
    return 0


async def list_keys(pool: asyncpg.Pool, _options: argparse.Namespace) -> int:
    write_table(await tenants.list_all(pool), sys.stdout)
    return 0


async def revoke(pool: asyncpg.Pool, options: argparse.Namespace) -> int:
    if not await tenants.revoke(pool, options.name):
        log.error("no key named %r that is not revoked already", options.name)
        return 1
    log.info("revoked key %r: the API refuses it within API_KEY_CACHE_SECONDS", options.name)
    return 0


def describe(tenant: tenants.Tenant) -> str:
    """Scopes and quotas, in words."""
    quotas = tenant.quotas
    return "; ".join(
        [
            "scopes " + ", ".join(sorted(tenant.scopes)),
            f"max queued {unlimited(quotas.max_queued)}",
            f"engine seconds per hour {unlimited(quotas.engine_seconds_per_hour)}",
            f"weight {quotas.weight:g}",
        ]
    )


def unlimited(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


COLUMNS = ("NAME", "SCOPES", "MAX QUEUED", "ENGINE S/HOUR", "WEIGHT", "CREATED", "REVOKED")


def write_table(keys: Sequence[tenants.Tenant], out: TextIO) -> None:
    """One line per key under a header, in aligned columns."""
    rows = [COLUMNS] + [
        (
            key.name,
            ",".join(sorted(key.scopes)),
            "-" if key.quotas.max_queued is None else str(key.quotas.max_queued),
            "-"
            if key.quotas.engine_seconds_per_hour is None
            else f"{key.quotas.engine_seconds_per_hour:g}",
            f"{key.quotas.weight:g}",
            moment(key.created_at),
            moment(key.revoked_at),
        )
        for key in keys
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")


def moment(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


if __name__ == "__main__":
    sys.exit(main())
