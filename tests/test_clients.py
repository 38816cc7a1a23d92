"""The clients people use, for real: Apollo Client 4 and subscriptions-transport-ws in
Node, and GraphiQL in headless Chromium, against a live API and worker.

The Node project in tests/clients is installed by `make test` (npm ci); Chromium comes
from Debian's package. Outside CI a missing piece skips these tests; in CI it fails them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from api.context import Context
from api.schema import schema
from api.transport import ide
from api.transport.http import GraphQLOverHTTP
from tests.conftest import ApiFactory
from tests.graphql_client import submit

CLIENTS = Path(__file__).resolve().parent / "clients"
SCREENSHOTS = CLIENTS / "screenshots"


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (make test installs it)")
    pytest.skip(f"{what} is not installed (make test installs it)")


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    require(path is not None, "Node.js")
    require(
        (CLIENTS / "node_modules" / "@apollo" / "client").is_dir(), "tests/clients/node_modules"
    )
    assert path is not None
    return path


async def run_node(node: str, script: str, timeout: float, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        node,
        script,
        cwd=CLIENTS,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, output.decode()


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("keyed", [True, False], ids=["with a key", "anonymously"])
async def test_apollo_client_and_subscriptions_transport_ws(
    node: str, start_api: ApiFactory, keyed: bool
) -> None:
    # With a key, anonymous use is off: a client that forgot to send it anywhere fails.
    api = await start_api(anonymous=not keyed)
    env = {"API_KEY": api.key, "API_KEY_NAME": "tests"} if keyed else {}
    code, output = await run_node(node, "apollo.mjs", 120, API_URL=api.http_url, **env)
    assert code == 0, output
    passed = [line for line in output.splitlines() if line.startswith("ok ")]
    assert len(passed) == 11, output


async def test_graphiql_sends_the_key_of_its_headers_editor_on_subscriptions(
    node: str, start_api: ApiFactory
) -> None:
    require(shutil.which("chromium") is not None, "Chromium (apt-get install chromium)")
    require(ide.installed(), "api/ide_assets/node_modules (GraphiQL's files)")
    api = await start_api()  # anonymous use off: without the key, the subscription fails
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    done = await submit(api.http_url, fen=mated)
    SCREENSHOTS.mkdir(exist_ok=True)
    screenshot = SCREENSHOTS / "graphiql-with-a-key.png"
    query = f'subscription {{ analysisCompleted(id: "{done["id"]}") {{ id status }} }}'
    code, output = await run_node(
        node,
        "graphiql.mjs",
        120,
        API_URL=api.http_url,
        SCREENSHOT=str(screenshot),
        API_KEY=api.key,
        QUERY=query,
        EXPECT='"DONE"',
    )
    assert code == 0, output


async def test_graphiql_runs_the_reference_mutation_offline(
    node: str, start_api: ApiFactory
) -> None:
    api = await start_api(anonymous=True)  # as under `make run`
    require(shutil.which("chromium") is not None, "Chromium (apt-get install chromium)")
    require(ide.installed(), "api/ide_assets/node_modules (GraphiQL's files)")
    SCREENSHOTS.mkdir(exist_ok=True)
    screenshot = SCREENSHOTS / "graphiql.png"
    screenshot.unlink(missing_ok=True)
    code, output = await run_node(
        node, "graphiql.mjs", 120, API_URL=api.http_url, SCREENSHOT=str(screenshot)
    )
    assert code == 0, output
    assert screenshot.stat().st_size > 10_000, "a screenshot with the IDE and its result"


def test_without_local_files_graphiql_comes_from_its_cdn(tmp_path: Path) -> None:
    assert not ide.installed(tmp_path)
    view = GraphQLOverHTTP(
        schema, graphql_ide="graphiql", context_getter=_no_context, persisted=lambda: None
    )
    assert not view.local_ide
    assert "https://" in view.graphql_ide_html
    view.local_ide = True
    assert "https://" not in view.graphql_ide_html
    assert ide.STATIC_PATH in view.graphql_ide_html


async def _no_context() -> Context:
    raise AssertionError("the IDE page needs no context")
