"""The README's first examples run as pasted, against a real API and worker."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import ApiFactory, Server

README = Path(__file__).resolve().parent.parent / "README.md"
FIRST_MINUTES = "## The first ten minutes"


def examples(language: str) -> list[str]:
    """The `language` code blocks of the README's first-ten-minutes section."""
    text = README.read_text()
    start = text.index(FIRST_MINUTES)
    end = text.index("\n## ", start + len(FIRST_MINUTES))
    return re.findall(rf"```{language}\n(.*?)```", text[start:end], flags=re.DOTALL)


async def run(command: list[str], port: int) -> str:
    """`command`'s output, with the README's port replaced by the test API's."""
    process = await asyncio.create_subprocess_exec(
        *command[:-1],
        command[-1].replace("localhost:8000", f"localhost:{port}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


def test_the_section_has_its_examples() -> None:
    assert len(examples("sh")) == 2  # the second needs a key the reader makes
    assert len(examples("python")) == 1
    assert len(examples("graphql")) == 2


@pytest.fixture
async def api(start_api: ApiFactory) -> Server:
    """The API as `make run` serves it: anonymous use on, as the first examples assume."""
    return await start_api(anonymous=True)


@pytest.mark.usefixtures("worker")
async def test_the_shell_example_follows_an_analysis_to_its_end(api: Server) -> None:
    out = await run(["bash", "-euo", "pipefail", "-c", examples("sh")[0]], api.port)
    compact = out.replace(" ", "")
    assert '"status":"DONE"' in compact, out
    assert '"mateScore":-2' in compact, out
    assert "--graphql--" in out, out  # the subscription completed


@pytest.mark.usefixtures("worker")
async def test_the_python_example_prints_the_lines(api: Server) -> None:
    out = await run([sys.executable, "-c", examples("python")[0]], api.port)
    lines = out.splitlines()
    assert lines[0].strip() == "DONE", out
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"], out
