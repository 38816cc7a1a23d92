"""A fresh database per scenario on the benchmark's PostgreSQL server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg

from db.settings import asyncpg_dsn, with_database


async def admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def scratch(server_url: str, purpose: str) -> AsyncIterator[str]:
    """A new empty database for one scenario (a URL), dropped afterwards."""
    name = f"bench_{purpose}_{uuid.uuid4().hex[:8]}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def server_facts(server_url: str) -> dict[str, str]:
    """The server's version and the durability settings the figures depend on."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        facts = {"version": str(await connection.fetchval("SHOW server_version"))}
        for setting in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers"):
            facts[setting] = str(await connection.fetchval(f"SHOW {setting}"))
        return facts
    finally:
        await connection.close()
