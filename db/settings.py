"""Database settings, read from the environment by each entry point."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


class DatabaseSettings(BaseSettings):
    """Where PostgreSQL is and how many connections a process may hold.

    The API and the worker need `DATABASE_URL`; the tools that set up a machine
    (`make run`, the tests, the benchmarks, `chess-analysis-migrate`) start the embedded
    server under `DB_DATA_DIR` when it is unset (see `tooling.embedded_postgres`).
    """

    model_config = SettingsConfigDict(env_prefix="DB_", extra="ignore")

    url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "DB_URL"))
    """`postgresql://user:password@host:port/database`; unset: the embedded server."""
    data_dir: Path = Path(".data")
    """Where the embedded server keeps its files (only when `DATABASE_URL` is unset)."""
    pool_size: int = Field(default=5, ge=1, le=100)
    """SQLAlchemy pool size per process."""
    max_overflow: int = Field(default=5, ge=0, le=100)
    """Connections a process may open beyond `pool_size` under load."""
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds to wait for a new connection before the request fails."""


MISSING_URL = (
    "DATABASE_URL is not set: point it at PostgreSQL (postgresql://user:password@host/db). "
    "`make run` starts an embedded server and sets it; `chess-analysis-postgres start` "
    "starts one and prints its URL."
)
"""What the API and the worker say when they have no database to connect to."""


def asyncpg_dsn(url: str) -> str:
    """The plain `postgresql://` form asyncpg accepts, whatever driver suffix `url` carries."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError("a database URL looks like postgresql://user@host/database")
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: scheme {scheme!r}")
    return f"postgresql://{rest}"


def with_database(url: str, database: str) -> str:
    """`url` pointed at another database on the same server."""
    return (
        make_url(sqlalchemy_url(url)).set(database=database).render_as_string(hide_password=False)
    )


def sqlalchemy_url(url: str) -> str:
    """The `postgresql+asyncpg://` form SQLAlchemy needs for the asyncio driver."""
    return "postgresql+asyncpg://" + asyncpg_dsn(url).removeprefix("postgresql://")
