"""Operating the service: protection limits, listings, queue statistics, health, metrics,
logs."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from api import cursors
from api.settings import ApiSettings
from api.transport import protection
from db import claims, insight
from db.models import AnalysisStatus
from tests.conftest import ApiFactory, Server
from tests.graphql_client import post, subscribe_transport_ws
from tests.rows import store
from tests.test_validation import CRAFTED_CURSORS

LIST = """
query List($first: Int!, $after: String, $status: AnalysisStatus) {
  analyses(first: $first, after: $after, status: $status) {
    edges { cursor node { id status createdAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

STATS = """
{ queueStats { queued running done failed canceled oldestQueuedAgeSeconds
  finishedLastMinute workersAlive runningWithoutWorker
  workers { id host pid slots running engine listening startedAt lastSeenAt } } }
"""


async def graphql_error(server: Server, query: str) -> str:
    body = await post(server.http_url, query)
    assert body.get("data") is None, body
    message: str = body["errors"][0]["message"]
    return message


# --- protection -----------------------------------------------------------------


async def test_deep_documents_are_refused(start_api: ApiFactory) -> None:
    server = await start_api(max_query_depth=1)
    message = await graphql_error(server, '{ analysis(id: "x") { result { pv } } }')
    assert "exceeds maximum operation depth of 1" in message
    # Subscriptions over WebSocket obey the same limit.
    messages = await subscribe_transport_ws(
        server.ws_url,
        "subscription S($id: ID!) { analysisCompleted(id: $id) { result { pv } } }",
        {"id": str(uuid.uuid4())},
        5,
    )
    assert "maximum operation depth" in json.dumps(messages)


async def test_documents_with_too_many_tokens_are_refused(start_api: ApiFactory) -> None:
    server = await start_api(max_tokens=100)
    message = await graphql_error(server, "{ " + "__typename " * 200 + "}")
    assert "token" in message.lower()


async def test_documents_with_too_many_aliases_are_refused(start_api: ApiFactory) -> None:
    server = await start_api(max_aliases=3)
    aliases = " ".join(f"a{n}: __typename" for n in range(5))
    message = await graphql_error(server, "{ " + aliases + " }")
    assert "aliases" in message.lower()


async def test_a_5_mb_body_is_refused_quickly_with_413(api: Server) -> None:
    body = b'{"query": "{ __typename }", "padding": "' + b"x" * 5_000_000 + b'"}'
    async with httpx.AsyncClient(timeout=10, headers=api.headers) as client:
        started = time.monotonic()
        response = await client.post(
            api.http_url, content=body, headers={"content-type": "application/json"}
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        assert elapsed < 2
        # A body streamed without Content-Length is cut off too.
        chunks = [b"x" * 65536 for _ in range(80)]

        async def stream():  # type: ignore[no-untyped-def]
            for chunk in chunks:
                yield chunk

        response = await client.post(
            api.http_url, content=stream(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        # The server stays healthy.
        assert (await client.get(api.http_url.replace("/graphql", "/healthz"))).status_code == 200
    assert (await post(api.http_url, "{ __typename }")) == {"data": {"__typename": "Query"}}


async def test_introspection_can_be_switched_off(start_api: ApiFactory) -> None:
    server = await start_api(introspection=False)
    message = await graphql_error(server, "{ __schema { types { name } } }")
    assert "introspection" in message.lower()
    assert (await post(server.http_url, "{ __typename }"))["data"] == {"__typename": "Query"}


async def test_cors_origins_come_from_the_settings(start_api: ApiFactory) -> None:
    server = await start_api(cors_origins=["https://app.example"])
    preflight = {"access-control-request-method": "POST"}
    async with httpx.AsyncClient(timeout=10) as client:
        allowed = await client.options(
            server.http_url, headers={"origin": "https://app.example", **preflight}
        )
        refused = await client.options(
            server.http_url, headers={"origin": "https://evil.example", **preflight}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in refused.headers


GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")


async def test_pages_on_allowed_origins_may_open_subscriptions(start_api: ApiFactory) -> None:
    # Browsers send Origin on WebSocket handshakes; the same list as for HTTP applies.
    server = await start_api(cors_origins=["https://app.example"])

    async def handshake(origin: str) -> str | None:
        async with connect(
            server.ws_url, subprotocols=[GRAPHQL_TRANSPORT_WS], origin=Origin(origin)
        ) as socket:
            return socket.subprotocol

    assert await handshake("https://app.example") == GRAPHQL_TRANSPORT_WS
    with pytest.raises(InvalidStatus) as refused:
        await handshake("https://evil.example")
    assert refused.value.response.status_code == 403


# --- listings -------------------------------------------------------------------


async def list_page(server: Server, **variables: object) -> dict[str, object]:
    # An admin's listing: the rows stored here belong to no key (the anonymous tenant).
    body = await post(server.http_url, LIST, variables, key=server.admin_key)
    assert "errors" not in body, body
    page: dict[str, object] = body["data"]["analyses"]
    return page


def ids(page: dict[str, object]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]  # type: ignore[attr-defined,index]


async def test_listing_pages_newest_first_stable_under_inserts(
    api: Server, database: AsyncEngine
) -> None:
    stored = [str((await store(database)).id) for _ in range(7)]
    newest_first = list(reversed(stored))
    first = await list_page(api, first=3)
    assert ids(first) == newest_first[:3]
    assert first["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": first["edges"][0]["cursor"],  # type: ignore[index]
        "endCursor": first["edges"][-1]["cursor"],  # type: ignore[index]
    }
    # New rows arrive between pages: they are newer, so later pages do not shift.
    for _ in range(3):
        await store(database)
    cursor = first["pageInfo"]["endCursor"]  # type: ignore[index]
    second = await list_page(api, first=3, after=cursor)
    third = await list_page(api, first=3, after=second["pageInfo"]["endCursor"])  # type: ignore[index]
    assert ids(second) == newest_first[3:6]
    assert ids(third) == newest_first[6:]
    assert third["pageInfo"]["hasNextPage"] is False  # type: ignore[index]


async def test_listing_filters_by_status(
    api: Server, database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    await store(database)
    running = await store(database)
    await claims.claim_next(pool, "w", 15)  # claims the oldest queued row
    page = await list_page(api, first=10, status="RUNNING")
    assert len(ids(page)) == 1 and ids(page) != [str(running.id)]
    assert len(ids(await list_page(api, first=10, status="QUEUED"))) == 1
    assert ids(await list_page(api, first=10, status="DONE")) == []


@pytest.mark.parametrize(
    ("variables", "field"),
    [({"first": 0}, "first"), ({"first": 101}, "first"), ({"first": 5, "after": "bogus"}, "after")],
)
async def test_listing_refuses_bad_arguments(
    api: Server, variables: dict[str, object], field: str
) -> None:
    body = await post(api.http_url, LIST, variables)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith(f"{field}: ")


async def test_listing_refuses_crafted_cursors_as_bad_input(
    api: Server, database: AsyncEngine
) -> None:
    # Cursors that decode but are not ours, among them well-formed dates that cannot be
    # put in UTC (which used to reach the driver and come back INTERNAL_SERVER_ERROR).
    await store(database)
    for name, cursor in CRAFTED_CURSORS.items():
        body = await post(api.http_url, LIST, {"first": 5, "after": cursor})
        assert body["data"] is None, name
        [error] = body["errors"]
        assert error["message"] == "after: not a cursor from this listing", name
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}, name
    # Our own cursors still page, at the ends of the date range too.
    assert ids(await list_page(api, first=5))
    for extreme in (datetime.min, datetime.max):
        position = insight.Position(extreme.replace(tzinfo=UTC), uuid.uuid4())
        page = await list_page(api, first=5, after=cursors._encode(position))
        assert len(ids(page)) == (1 if extreme == datetime.max else 0)


@pytest.mark.parametrize(
    ("status", "index"),
    [(None, "ix_analyses_listing"), (AnalysisStatus.QUEUED, "ix_analyses_status_listing")],
)
@pytest.mark.parametrize("after", [False, True])
async def test_listing_is_served_by_an_index(
    database: AsyncEngine, status: AnalysisStatus | None, index: str, after: bool
) -> None:
    position = insight.Position(datetime.now(UTC), uuid.uuid4()) if after else None
    query = insight.newest_query(21, position, status)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with database.begin() as connection:
        await connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(row[0] for row in await connection.execute(text("EXPLAIN " + sql)))
    assert index in plan, plan
    assert "Sort" not in plan, "the index gives the order"


def test_limit_rules_are_shared_so_validation_stays_cached() -> None:
    # Validation is cached per (schema, document, rules): rules made anew for each
    # operation would miss the cache every time.
    factories = protection.extensions(ApiSettings())

    def rules() -> list[object]:
        return [
            rule
            for extension in (factory() for factory in factories)
            if isinstance(extension, protection.Documents)
            for rule in extension.limits.rules
        ]

    assert len(rules()) == 2, "the depth and alias rules"
    assert rules() == rules()
