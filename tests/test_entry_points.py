"""The API and the worker need a database: without `DATABASE_URL` they say so and stop,
and start no server of their own."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", ["api", "engine"])
async def test_no_database_url_stops_with_a_message(module: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "DB_URL", "DB_DATA_DIR")
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        env={**environment, "DB_DATA_DIR": str(data_dir), "LOG_FORMAT": "text"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    text = output.decode()
    assert process.returncode == 2, text
    assert "DATABASE_URL is not set" in text
    assert "Traceback" not in text
    assert not data_dir.exists(), "no embedded server was started"
