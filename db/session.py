"""Connections: the SQLAlchemy engine each process shares, and the worker's asyncpg pool."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from db.settings import DatabaseSettings, asyncpg_dsn, sqlalchemy_url


def create_engine(
    settings: DatabaseSettings, url: str, *, application_name: str = "chess-analysis"
) -> AsyncEngine:
    """A pooled engine for `url`; `application_name` shows in `pg_stat_activity`."""
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.connect_timeout,
        pool_pre_ping=True,
        connect_args={
            "timeout": settings.connect_timeout,
            "server_settings": {"application_name": application_name},
        },
    )


async def create_pool(
    settings: DatabaseSettings,
    url: str,
    *,
    application_name: str = "chess-analysis",
    min_size: int = 1,
    generic_plans: bool = False,
) -> asyncpg.Pool:
    """A plain asyncpg pool for the hot paths (the worker's claims and outcomes, the
    API's submissions): one round trip per statement, prepared statements, no ORM.
    Broken connections are replaced by the pool itself.

    `generic_plans`: every prepared statement runs on its one generic plan, never planned
    again for its parameters (for the worker's statements, whose best plan does not
    depend on them: planning its exchange took about a sixth of the statement's time)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(url),
        min_size=min_size,
        max_size=settings.pool_size,
        timeout=settings.connect_timeout,
        command_timeout=60,
        server_settings={
            "application_name": application_name,
            **({"plan_cache_mode": "force_generic_plan"} if generic_plans else {}),
        },
        reset=_nothing_to_reset,
    )
    return pool


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """The pool's statements are single autocommit statements that leave no session
    state behind (no LISTEN, SET, advisory lock or cursor), so a returned connection
    needs no reset query: asyncpg's default (`RESET ALL`, `UNLISTEN *`, ...) would cost
    a round trip per statement, as much as the statement itself. An open transaction
    is still rolled back by asyncpg before this is called."""


def session(engine: AsyncEngine) -> AsyncSession:
    """A session whose objects stay readable after commit (they cross into GraphQL types)."""
    return AsyncSession(engine, expire_on_commit=False)
