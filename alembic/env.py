"""Alembic environment: runs migrations over the asyncio driver.

The URL comes from the `sqlalchemy.url` option when a caller sets one (the tests do),
else from `DATABASE_URL`, else from the embedded server, started if needed.
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db import models
from db.settings import DatabaseSettings, sqlalchemy_url
from tooling import embedded_postgres

config = context.config
target_metadata = models.Base.metadata


def database_url() -> str:
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    settings = DatabaseSettings()
    return embedded_postgres.resolve_url(settings.url, settings.data_dir)


def run_migrations_offline() -> None:
    context.configure(
        url=sqlalchemy_url(database_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    # A migration that cannot take its lock quickly fails instead of queueing behind a
    # long transaction while every claim and finish queues behind it.
    engine = create_async_engine(
        sqlalchemy_url(database_url()),
        connect_args={"server_settings": {"lock_timeout": "10s"}},
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
