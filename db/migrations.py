"""Apply the Alembic migrations: `chess-analysis-migrate` is `alembic upgrade head`
that works from any directory and starts the embedded server when `DATABASE_URL` is unset."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_DIR = Path(__file__).resolve().parent.parent


def alembic_config(url: str | None = None) -> Config:
    """The project's Alembic configuration, aimed at `url` when given."""
    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_DIR / "alembic"))
    if url is not None:
        # ConfigParser treats % as interpolation.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at `url` (default: from the environment) to `revision`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Take the database at `url` back to `revision`."""
    command.downgrade(alembic_config(url), revision)


def main(argv: list[str] | None = None) -> int:
    """`chess-analysis-migrate [REVISION]`."""
    from db.settings import DatabaseSettings
    from runtime import usage

    parser = usage.parser(
        "chess-analysis-migrate",
        "Apply the database migrations (`alembic upgrade REVISION`) from any directory.\n"
        "Without DATABASE_URL, the embedded PostgreSQL under DB_DATA_DIR is started if\n"
        "needed, and left running (`chess-analysis-postgres stop` stops it).",
        [
            usage.Section(
                "database (db/settings.py)",
                DatabaseSettings,
                hidden=("pool_size", "max_overflow", "connect_timeout"),
            )
        ],
    )
    parser.add_argument(
        "revision", nargs="?", default="head", help="the revision to reach (default: head)"
    )
    upgrade(revision=parser.parse_args(argv).revision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
