"""What a run cost the PostgreSQL server: CPU seconds of its processes (when it runs on
this machine, as the embedded server does) and WAL bytes written."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from db.settings import asyncpg_dsn


def cpu_seconds(postmaster_pid: int | None) -> float | None:
    """CPU time of the server's processes so far (its children's included, the ones that
    have exited too); None when it does not run here."""
    if postmaster_pid is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = _stat(postmaster_pid)
    except OSError:
        return None
    # utime, stime, cutime, cstime of the postmaster (exited backends are in the last two)
    total = sum(int(value) for value in fields[11:15])
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            child = _stat(int(entry))
        except OSError:
            continue
        if int(child[1]) == postmaster_pid:
            total += int(child[11]) + int(child[12])
    return total / ticks


def _stat(pid: int) -> list[str]:
    # the fields after the command name, which may hold spaces and parentheses
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def local_postmaster(pgdata: Path | None) -> int | None:
    """The embedded server's postmaster process, from its data directory."""
    if pgdata is None:
        return None
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def wal_lsn(url: str) -> int:
    """The server's current WAL position, in bytes."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    finally:
        await connection.close()
