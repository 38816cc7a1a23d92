"""Migrations: they go up, down and up again, match the models exactly, commit one by
one, and run on a table that holds rows while submissions go on."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import exc as sqlalchemy_errors
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db import migrations, models
from db.settings import asyncpg_dsn, sqlalchemy_url

START_FEN = "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1"
ROWS_BEFORE = 5000
"""Rows in `analyses` before the live upgrade starts."""


async def tables(url: str) -> set[str]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await connection.close()


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    assert {"analyses", "alembic_version"} <= await tables(empty_database_url)
    await asyncio.to_thread(migrations.downgrade, empty_database_url)
    assert await tables(empty_database_url) <= {"alembic_version"}
    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    assert "analyses" in await tables(empty_database_url)


def differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, models.Base.metadata))


async def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_each_migration_commits_on_its_own(empty_database_url: str) -> None:
    # 0004 creates persisted_queries: made beforehand, the table makes 0004 fail.
    connection = await asyncpg.connect(asyncpg_dsn(empty_database_url))
    try:
        await connection.execute("CREATE TABLE persisted_queries (sha256 text)")
        with pytest.raises(sqlalchemy_errors.ProgrammingError, match="persisted_queries"):
            await asyncio.to_thread(migrations.upgrade, empty_database_url)
        # 0001-0003 stay applied; in one transaction for all, nothing would.
        assert await connection.fetchval("SELECT version_num FROM alembic_version") == "0003"
        assert {"analyses", "workers"} <= await tables(empty_database_url)
    finally:
        await connection.close()


@dataclass
class Submissions:
    """What a client inserting one analysis after another saw."""

    done: int = 0
    """Inserts that succeeded."""
    failed: list[BaseException] = field(default_factory=list)
    """Why the others failed."""
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once inserts succeed, so the upgrade starts on a table being written."""


async def submit(url: str, stop: asyncio.Event, submissions: Submissions) -> None:
    """Insert one row per statement until `stop` is set; a blocked insert times out."""
    connection = await asyncpg.connect(
        asyncpg_dsn(url), server_settings={"statement_timeout": "1s"}
    )
    try:
        while not stop.is_set():
            try:
                await connection.execute(
                    "INSERT INTO analyses (fen, num_moves_to_return, time_limit)"
                    " VALUES ($1, 1, 1.0)",
                    START_FEN,
                    timeout=5,
                )
            except (asyncpg.PostgresError, TimeoutError) as error:
                submissions.failed.append(error)
            else:
                submissions.done += 1
                if submissions.done == 10:
                    submissions.flowing.set()
    finally:
        await connection.close()


async def test_upgrade_a_table_that_holds_rows_while_submissions_go_on(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await asyncio.to_thread(migrations.upgrade, url, "0005")
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(
            "INSERT INTO analyses (fen, num_moves_to_return, time_limit)"
            " SELECT $1, 1, 1.0 FROM generate_series(1, $2)",
            START_FEN,
            ROWS_BEFORE,
        )

        submissions = Submissions()
        stop = asyncio.Event()
        submitter = asyncio.create_task(submit(url, stop, submissions))
        try:
            await asyncio.wait_for(submissions.flowing.wait(), timeout=10)
            done_before = submissions.done
            started = time.monotonic()
            await asyncio.wait_for(asyncio.to_thread(migrations.upgrade, url), timeout=60)
            upgrade_seconds = time.monotonic() - started
            done_during = submissions.done - done_before
        finally:
            stop.set()
            await asyncio.wait_for(submitter, timeout=10)

        assert submissions.failed == []
        assert done_during > 0, f"no insert while the upgrade ran ({upgrade_seconds:.2f} s)"
        count = await connection.fetchval("SELECT count(*) FROM analyses")
        assert count == ROWS_BEFORE + submissions.done

        indexes = await connection.fetch(
            """
            SELECT indexrelid::regclass::text AS name, indisvalid AS valid,
                   pg_get_expr(indpred, indrelid) AS predicate
            FROM pg_index WHERE indrelid = 'analyses'::regclass
            """
        )
        assert [row["name"] for row in indexes if not row["valid"]] == []
        predicates = {row["name"]: row["predicate"] for row in indexes}
        assert predicates["ix_analyses_finished_at"] == "(finished_at IS NOT NULL)"
    finally:
        await connection.close()
