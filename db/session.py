"""The SQLAlchemy engine each process shares: one pool per process."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from db.settings import DatabaseSettings, sqlalchemy_url


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


def session(engine: AsyncEngine) -> AsyncSession:
    """A session whose objects stay readable after commit (they cross into GraphQL types)."""
    return AsyncSession(engine, expire_on_commit=False)
