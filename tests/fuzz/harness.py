"""The server under test (`Target`), its log, what it stored, and the checks that
follow every example."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Server
from tests.fuzz.exchanges import (
    HEALTH_REQUEST,
    NOT_JSON,
    Answer,
    RawConnection,
    WsOutcome,
    code_of,
    exchange,
    graphql_errors,
    graphql_query_string,
)
from tests.fuzz.graphql_inputs import GraphQLRequest
from tests.fuzz.json_values import to_json

SETTLE_TIMEOUT = 3.0
"""How long the application may take to be done with an example's requests."""


class ServerLog(logging.Handler):
    """What the server logs at WARNING and above while an example runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [self.format(record) for record in self.records if record.levelno >= logging.ERROR]

    def describe(self) -> str:
        lines = "\n".join(self.format(record) for record in self.records)
        return f"\nserver log:\n{lines[-4000:]}" if lines else "\nserver log: (nothing)"


@dataclass(frozen=True)
class Stored:
    analyses: int
    persisted_queries: int


COUNTS = text("SELECT (SELECT count(*) FROM analyses), (SELECT count(*) FROM persisted_queries)")


def accounted_analyses(data: Any) -> int:
    """Analyses an answer's `data` returned (submissions; cancels of random ids fail)."""
    if not isinstance(data, dict):
        return 0
    return sum(isinstance(value, dict) and "status" in value for value in data.values())


@dataclass
class Target:
    """The server under test, its database, and its log."""

    server: Server
    database: AsyncEngine
    log: ServerLog
    client: httpx.AsyncClient
    """One connection at a time, kept alive from one example to the next."""
    opened_before: set[Any] | None = None
    """uvicorn's connections before an example that opens its own."""

    async def stored(self) -> Stored:
        async with self.database.connect() as connection:
            analyses, persisted = (await connection.execute(COUNTS)).one()
        return Stored(int(analyses), int(persisted))

    def busy(self) -> bool:
        """The application still serves a request or WebSocket of the example, or (when
        the example's connections are its own) uvicorn still holds one of them."""
        state = self.server._server.server_state  # uvicorn's
        if state.tasks:  # one per request being served, one per WebSocket
            return True
        return self.opened_before is not None and not state.connections <= self.opened_before

    async def settled(self) -> bool:
        """Wait (a bounded while) until the server is done with the example, so that what
        it logs late counts for this example and not the next; False if it is not."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SETTLE_TIMEOUT):
                while self.busy():
                    await asyncio.sleep(0.002)
        # A task's unretrieved exception is logged when the task is collected.
        gc.collect(1)
        return not self.busy()

    async def healthz(self) -> str:
        """GET /healthz on a new connection: 'ok' or what went wrong."""
        try:
            async with RawConnection.open(self.server.port) as connection:
                await connection.send(HEALTH_REQUEST)
                response = await connection.response()
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            return f"failed: {exc!r}"
        return "ok" if response and response[0] == 200 else f"answered {response}"

    @contextlib.asynccontextmanager
    async def example(self, *, own_connections: bool = False) -> AsyncIterator[None]:
        """One example; `own_connections`: it opens and closes its own connections, and
        the server must let go of each of them."""
        self.log.records.clear()
        connections = self.server._server.server_state.connections
        self.opened_before = set(connections) if own_connections else None
        yield

    async def check_http(self, answer: Answer, before: Stored) -> None:
        shown = answer.describe() + self.log.describe()
        results = [] if answer.head else answer.results()
        codes = {code_of(error) for result in results for error in graphql_errors(result)}
        assert answer.status is not None, f"closed without an answer\n{shown}"
        assert answer.status < 500 or (answer.status == 503 and codes == {"SERVICE_UNAVAILABLE"}), (
            f"a 5xx answer\n{shown}"
        )
        assert NOT_JSON not in results, f"a JSON media type whose body is not JSON\n{shown}"
        assert None not in codes, f"a GraphQL error without extensions.code\n{shown}"
        assert "INTERNAL_SERVER_ERROR" not in codes, f"a masked internal error\n{shown}"
        if answer.graphql_path and not 200 <= answer.status < 300 and answer.status != 101:
            # A refused WebSocket handshake (403 with an empty body on a disallowed Origin)
            # need not be JSON with an error code: a browser cannot read its body anyway.
            assert (
                answer.head
                or answer.upgrade
                or answer.refused_by_uvicorn
                or (answer.json_media and codes)
            ), f"a refusal on /graphql without a JSON error code\n{shown}"
        if answer.refused_by_uvicorn:
            assert answer.closes, f"uvicorn refused the bytes but kept the connection\n{shown}"
        assert answer.next_request.startswith(("ok", "not tried")), (
            f"the keep-alive connection did not serve the next request\n{shown}"
        )
        assert (health := await self.healthz()) == "ok", f"/healthz: {health}\n{shown}"
        await self.check_stored(before, answer, results, shown)
        assert await self.settled(), (
            f"the server is not done with the example (a request, a socket)\n{shown}"
        )
        assert not self.log.errors(), (
            f"the server logged an error\n{answer.describe()}{self.log.describe()}"
        )

    async def check_stored(
        self, before: Stored, answer: Answer, results: list[Any], shown: str
    ) -> None:
        after = await self.stored()
        answered = answer.status is not None and 200 <= answer.status < 300
        # A request that ran has `data` (null when a field error reached the root); one
        # refused before it ran (parse, validation, variables, HTTP) has none.
        ran = answered and any(isinstance(result, dict) and "data" in result for result in results)
        data = [result.get("data") for result in results if isinstance(result, dict)]
        returned = sum(accounted_analyses(value) for value in data) if answered else 0
        # GraphQL runs a request's mutations one by one, and a field error that reaches
        # the root nulls the whole `data`: the submissions before it are stored, though
        # not returned. A request that did not run stores nothing.
        root_nulled = ran and any(value is None for value in data)
        assert root_nulled or after.analyses - before.analyses <= returned, (
            f"{after.analyses - before.analyses} analyses stored, {returned} returned\n{shown}"
        )
        assert ran or after.analyses == before.analyses, (
            f"a refused request stored an analysis\n{shown}"
        )
        assert ran or after.persisted_queries == before.persisted_queries, (
            f"a refused request stored a persisted query\n{shown}"
        )

    async def check_websocket(self, outcome: WsOutcome, before: Stored) -> None:
        shown = outcome.describe() + self.log.describe()
        assert outcome.close_code not in (1006, 1011), f"the server crashed the socket\n{shown}"
        assert outcome.close_code is None or (
            1000 <= outcome.close_code <= 1015 or 4000 <= outcome.close_code <= 4999
        ), f"an unexpected close code\n{shown}"
        assert outcome.probe != "silent", f"the socket went silent\n{shown}"
        codes = {code_of(error) for error in outcome.graphql_errors()}
        assert None not in codes, f"a GraphQL error without extensions.code\n{shown}"
        assert "INTERNAL_SERVER_ERROR" not in codes, f"a masked internal error\n{shown}"
        assert (health := await self.healthz()) == "ok", f"/healthz: {health}\n{shown}"
        added = (await self.stored()).analyses - before.analyses
        returned = sum(accounted_analyses(result.get("data")) for result in outcome.results())
        assert added <= returned, f"{added} analyses stored, {returned} returned\n{shown}"
        assert await self.settled(), (
            f"the server is not done with the example (a request, a socket)\n{shown}"
        )
        assert not self.log.errors(), (
            f"the server logged an error\n{outcome.describe()}{self.log.describe()}"
        )


MAX_QUERY_STRING = 60_000
"""Past this, httpx refuses the URL: such a request goes as a POST instead."""


async def send_graphql(
    target: Target, request: GraphQLRequest, method: str, accept: str | None
) -> Answer:
    headers = {"accept": accept} if accept is not None else {}
    query = graphql_query_string(request.members())
    if method == "GET" and len(query) <= MAX_QUERY_STRING:
        return await exchange(target.client, target.server, "GET", query=query, headers=headers)
    body = to_json(request.members()).encode()
    headers["content-type"] = "application/json"
    return await exchange(target.client, target.server, "POST", body=body, headers=headers)
