"""The review page at `/`, for real: headless Chromium against a live API and worker
(tests/clients/review_page.mjs), and what the API serves with and without a build.

`make test` builds the page (`make page`: npm ci and esbuild in api/review_page) and
installs the browser test's Node project and Chromium. Outside CI a missing piece skips
the browser test; in CI it fails it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.transport import review_page
from tests.conftest import ApiFactory, WorkerFactory
from tests.test_clients import CLIENTS, SCREENSHOTS, require

CHECKS = 13
"""The checks review_page.mjs prints "ok" for when all pass."""
TIMEOUT_SECONDS = 100
"""Each of the script's waits is bounded (30 s at most); a whole run takes about 30 s."""


async def test_the_review_page_in_a_browser(
    start_api: ApiFactory, start_worker: WorkerFactory
) -> None:
    node = shutil.which("node")
    require(node is not None, "Node.js")
    require(shutil.which("chromium") is not None, "Chromium (apt-get install chromium)")
    require(
        (CLIENTS / "node_modules" / "playwright-core").is_dir(),
        "tests/clients/node_modules",
    )
    require(review_page.built(), "the built review page (make page)")
    assert node is not None
    await start_worker()
    api = await start_api()  # anonymous use off: the page must send the key it is given
    # Without a key, and a quota of five queued positions: the game's 33 do not fit.
    limited = await start_api(anonymous=True, anonymous_max_queued=5)
    code, output = await run_browser(
        node,
        API_URL=api.http_url,
        API_KEY=api.key,
        LIMITED_URL=limited.http_url,
        SCREENSHOTS=str(SCREENSHOTS),
    )
    assert code == 0, output
    passed = [line for line in output.splitlines() if line.startswith("ok ")]
    assert len(passed) == CHECKS, output


async def run_browser(node: str, **env: str) -> tuple[int | None, str]:
    """Run review_page.mjs; on a timeout, stop it and return what it printed so far,
    which says which check hung."""
    process = await asyncio.create_subprocess_exec(
        node,
        "review_page.mjs",
        cwd=CLIENTS,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            lines.append(line.decode())

    try:
        await asyncio.wait_for(asyncio.gather(read(), process.wait()), TIMEOUT_SECONDS)
    except TimeoutError:
        # SIGTERM first: Playwright then closes the browser it started.
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        lines.append(f"(stopped: no end after {TIMEOUT_SECONDS} s)\n")
        return None, "".join(lines)
    return process.returncode, "".join(lines)


def serve(directory: Path) -> httpx.AsyncClient:
    app = FastAPI()
    review_page.mount(app, directory)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_the_page_and_its_files_are_served_with_their_policies(tmp_path: Path) -> None:
    (tmp_path / "review").mkdir()
    (tmp_path / "index.html").write_text('<script src="review/review-AB12.js"></script>')
    (tmp_path / "review" / "review-AB12.js").write_text("console.log('hi')")
    async with serve(tmp_path) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy
        assert page.headers["cache-control"] == "no-cache"
        script = await client.get("/review/review-AB12.js")
        assert script.status_code == 200
        assert "immutable" in script.headers["cache-control"]
        assert (await client.get("/review/nothing.js")).status_code == 404


async def test_before_the_page_is_built_the_root_leads_to_graphiql(tmp_path: Path) -> None:
    assert not review_page.built(tmp_path)
    async with serve(tmp_path) as client:
        answer = await client.get("/")
    assert answer.status_code == 307
    assert answer.headers["location"] == "/graphql"


@pytest.mark.skipif(not review_page.built(), reason="the page is not built (make page)")
def test_the_built_page_names_files_that_exist() -> None:
    html = (review_page.BUILT / "index.html").read_text()
    names = [part.split('"')[0] for part in html.split('"review/')[1:]]
    assert any(name.endswith(".js") for name in names), html
    assert any(name.endswith(".css") for name in names), html
    for name in names:
        assert (review_page.BUILT / "review" / name).is_file(), name
