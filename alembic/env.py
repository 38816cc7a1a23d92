"""Alembic environment: runs migrations over the asyncio driver.

The URL comes from the `sqlalchemy.url` option when a caller sets one (the tests do),
else from `DATABASE_URL`, else from the embedded server, started if needed.

Migrations run against a live queue, one transaction each: a failure keeps the
migrations before it, and no lock is held from one migration to the next. Every
migration that creates or drops an index on an existing table does it `CONCURRENTLY`,
inside `with op.get_context().autocommit_block():`, with
`postgresql_concurrently=True` and a drop `IF EXISTS` before the build, so that a run
after a failed build removes the INVALID index it left (see 0006). A plain
`CREATE INDEX` blocks every insert, claim and finish until it is done; an index on a
table created in the same migration needs none of this.
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

LOCK_TIMEOUT = "3s"
"""How long a statement may wait for a lock before it fails.

While a migration waits for a table lock, every insert, claim and finish that needs
the table queues behind it; the service's own transactions last milliseconds, so a
lock not granted in a few seconds is held by a long transaction, and waiting longer
only lengthens the stall. The migration fails instead and can be run again. A
`CONCURRENTLY` build also waits (without blocking anyone) for transactions older than
itself, and fails the same way if one of them outlasts this. No `statement_timeout`:
it would cut short the build of an index on a large table.
"""


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
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(
        sqlalchemy_url(database_url()),
        connect_args={"server_settings": {"lock_timeout": LOCK_TIMEOUT}},
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
