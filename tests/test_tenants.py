"""Tenants against a real server: two tenants and an admin. Each sees only its own work
(and anonymous work by id), over every transport: HTTP POST and GET, multipart
subscriptions, and both WebSocket protocols; another tenant's id answers exactly as an
unknown one. Quotas refuse with their codes and `retryAfter`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from db import claims, tenants, workers
from tests.conftest import REFERENCE_FEN, ApiFactory, Server
from tests.graphql_client import SUBMIT, authorization, post, submit
from tests.rows import store

MATED = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
UNKNOWN = "00000000-0000-0000-0000-0000000000ff"

GET = "query Get($id: ID!) { analysis(id: $id) { id status } }"
CANCEL = "mutation Cancel($id: ID!) { cancelAnalysis(id: $id) { id status } }"
COMPLETED = "subscription Completed($id: ID!) { analysisCompleted(id: $id) { id status } }"
LIST = """
query List($status: AnalysisStatus) {
  analyses(first: 50, status: $status) { edges { node { id } } pageInfo { hasNextPage } }
}
"""
STATS = """
{ queueStats { queued running done failed canceled finishedLastMinute workersAlive
  runningWithoutWorker workers { id host pid } } }
"""
VIEWER = """
{ viewer { name scopes quotas { maxQueued engineSecondsPerHour weight }
  usage { queued running engineSecondsAvailable engineSecondsLastHour } } }
"""

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
QUERIES = ["POST", "GET", TRANSPORT_WS, LEGACY_WS]
MUTATIONS = ["POST", TRANSPORT_WS, LEGACY_WS]
SUBSCRIPTIONS = ["multipart", TRANSPORT_WS, LEGACY_WS]
MULTIPART = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'


@dataclass(frozen=True)
class Tenants:
    """A server and the keys of its callers."""

    server: Server
    alice: str
    bob: str
    admin: str


@pytest.fixture
async def two(start_api: ApiFactory, pool: asyncpg.Pool) -> Tenants:
    """Two tenants with no quotas, and the admin, on one server."""
    server = await start_api()
    _, alice = await tenants.create(pool, "alice")
    _, bob = await tenants.create(pool, "bob")
    return Tenants(server, alice, bob, server.admin_key)


async def execute(
    server: Server,
    transport: str,
    key: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one operation over `transport` with `key`: its first result, as
    `{"data": …, "errors": […]}` (an `error` message's errors under "errors")."""
    variables = variables or {}
    if transport in ("POST", "GET", "multipart"):
        return await execute_over_http(server, transport, key, query, variables)
    async with connect(server.ws_url, subprotocols=[Subprotocol(transport)]) as socket:
        init = {"type": "connection_init", "payload": authorization(key)}
        await socket.send(json.dumps(init))
        assert (await receive(socket))["type"] == "connection_ack"
        kind = "subscribe" if transport == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables}
        await socket.send(json.dumps({"id": "1", "type": kind, "payload": payload}))
        message = await receive(socket)
    if message["type"] == "error":
        errors = message["payload"]
        return {"errors": errors if isinstance(errors, list) else [errors]}
    assert message["type"] in ("next", "data"), message
    result: dict[str, Any] = message["payload"]
    return result


async def execute_over_http(
    server: Server, transport: str, key: str | None, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10, headers=authorization(key)) as client:
        if transport == "GET":
            params = {"query": query, "variables": json.dumps(variables)}
            response = await client.get(server.http_url, params=params)
        elif transport == "POST":
            response = await client.post(
                server.http_url, json={"query": query, "variables": variables}
            )
        else:
            async with client.stream(
                "POST",
                server.http_url,
                json={"query": query, "variables": variables},
                headers={"accept": MULTIPART},
            ) as streamed:
                assert streamed.status_code == 200, await streamed.aread()
                body = (await streamed.aread()).decode()
            return first_part(body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def first_part(body: str) -> dict[str, Any]:
    """The first result of a multipart subscription's answer."""
    for part in body.split("--graphql"):
        if "{" not in part:
            continue
        decoded = json.loads(part[part.index("{") :])
        if decoded.get("payload") is not None:
            result: dict[str, Any] = decoded["payload"]
            return result
        if decoded.get("errors"):
            return {"errors": decoded["errors"]}
    raise AssertionError(f"no result in {body!r}")


async def receive(socket: ClientConnection) -> dict[str, Any]:
    """The next message that is not a keep-alive (within 10 s)."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if message["type"] == "ping":
            await socket.send(json.dumps({"type": "pong"}))
        elif message["type"] != "ka":
            return message


def as_unknown(answer: dict[str, Any], analysis_id: str) -> dict[str, Any]:
    """`answer` with `analysis_id` written as the unknown id, to compare the two."""
    return dict(json.loads(json.dumps(answer).replace(analysis_id, UNKNOWN)))


# --- reads, cancels and subscriptions -----------------------------------------------


@pytest.mark.parametrize("transport", QUERIES)
async def test_another_tenants_analysis_reads_as_an_unknown_id(
    two: Tenants, database: AsyncEngine, transport: str
) -> None:
    server = two.server
    mine = await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.alice)
    anonymous = str((await store(database)).id)

    async def read(key: str, analysis_id: str) -> dict[str, Any]:
        return await execute(server, transport, key, GET, {"id": analysis_id})

    unknown = await read(two.bob, UNKNOWN)
    assert unknown == {"data": {"analysis": None}}
    assert as_unknown(await read(two.bob, mine["id"]), mine["id"]) == unknown
    for key in (two.alice, two.admin):
        assert (await read(key, mine["id"]))["data"]["analysis"]["id"] == mine["id"]
    # Anonymous work is reachable by its id, by anyone.
    for key in (two.alice, two.bob):
        assert (await read(key, anonymous))["data"]["analysis"]["id"] == anonymous


@pytest.mark.parametrize("transport", MUTATIONS)
async def test_a_submission_belongs_to_who_sent_it(two: Tenants, transport: str) -> None:
    variables = {"input": {"fen": REFERENCE_FEN}}
    answer = await execute(two.server, transport, two.alice, SUBMIT, variables)
    analysis_id = answer["data"]["submitAnalysis"]["id"]
    assert await listed(two.server, two.alice) == {analysis_id}
    assert await listed(two.server, two.bob) == set()
    assert (await post(two.server.http_url, GET, {"id": analysis_id}, key=two.bob)) == {
        "data": {"analysis": None}
    }


@pytest.mark.parametrize("transport", MUTATIONS)
async def test_another_tenants_analysis_cannot_be_canceled(two: Tenants, transport: str) -> None:
    server = two.server
    mine = await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.alice)

    async def cancel(key: str, analysis_id: str) -> dict[str, Any]:
        return await execute(server, transport, key, CANCEL, {"id": analysis_id})

    unknown = await cancel(two.bob, UNKNOWN)
    assert [error["extensions"]["code"] for error in unknown["errors"]] == ["NOT_FOUND"]
    assert as_unknown(await cancel(two.bob, mine["id"]), mine["id"]) == unknown
    read = await post(server.http_url, GET, {"id": mine["id"]}, key=two.alice)
    assert read["data"]["analysis"]["status"] == "QUEUED", "left as it was"
    # Its owner may cancel it, and so may an admin anyone's.
    assert (await cancel(two.alice, mine["id"]))["data"]["cancelAnalysis"]["status"] == "CANCELED"
    bobs = await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.bob)
    assert (await cancel(two.admin, bobs["id"]))["data"]["cancelAnalysis"]["status"] == "CANCELED"


@pytest.mark.parametrize("transport", SUBSCRIPTIONS)
async def test_another_tenants_analysis_cannot_be_awaited(
    two: Tenants, database: AsyncEngine, transport: str
) -> None:
    server = two.server
    # Finished ones: an owner's subscription would answer at once, so a refusal that
    # waited could not pass for an answer.
    mine = await submit(server.http_url, fen=MATED, key=two.alice)
    queued = await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.alice)

    async def await_completion(key: str, analysis_id: str) -> dict[str, Any]:
        return await execute(server, transport, key, COMPLETED, {"id": analysis_id})

    unknown = await await_completion(two.bob, UNKNOWN)
    assert [error["extensions"]["code"] for error in unknown["errors"]] == ["NOT_FOUND"]
    for analysis in (mine, queued):
        answer = await await_completion(two.bob, analysis["id"])
        assert as_unknown(answer, analysis["id"]) == unknown
    assert server.services.hub.waiting == 0
    for key in (two.alice, two.admin):
        done = await await_completion(key, mine["id"])
        assert done["data"]["analysisCompleted"]["status"] == "DONE"
    anonymous = await store(database)
    async with database.begin() as connection:
        await connection.exec_driver_sql(
            f"UPDATE analyses SET status = 'canceled', finished_at = now()"
            f" WHERE id = '{anonymous.id}'"
        )
    answer = await await_completion(two.bob, str(anonymous.id))
    assert answer["data"]["analysisCompleted"]["status"] == "CANCELED"


# --- listings, statistics, viewer ---------------------------------------------------


async def listed(
    server: Server, key: str | None, transport: str = "POST", **variables: Any
) -> set[str]:
    answer = await execute(server, transport, key, LIST, variables)
    assert "errors" not in answer, answer
    return {edge["node"]["id"] for edge in answer["data"]["analyses"]["edges"]}


@pytest.mark.parametrize("transport", QUERIES)
async def test_each_tenant_lists_its_own_analyses_and_an_admin_all(
    two: Tenants, database: AsyncEngine, transport: str
) -> None:
    server = two.server
    alices = {
        (await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.alice))["id"]
        for _ in range(3)
    }
    bobs = {(await submit(server.http_url, fen=MATED, key=two.bob))["id"] for _ in range(2)}
    anonymous = {str((await store(database)).id)}
    assert await listed(server, two.alice, transport) == alices
    assert await listed(server, two.bob, transport) == bobs
    assert await listed(server, two.admin, transport) == alices | bobs | anonymous
    assert await listed(server, two.bob, transport, status="QUEUED") == set()
    assert await listed(server, two.bob, transport, status="DONE") == bobs


async def test_an_anonymous_listing_is_empty(
    two: Tenants, start_api: ApiFactory, database: AsyncEngine
) -> None:
    await store(database)
    await submit(two.server.http_url, fen=REFERENCE_FEN, key=two.alice)
    open_server = await start_api(anonymous=True)
    await submit(open_server.http_url, fen=REFERENCE_FEN, key=None)
    assert await listed(open_server, None) == set()
    assert len(await listed(open_server, two.admin)) == 3


async def test_queue_stats_count_ones_own_work_and_show_workers_to_admins(
    two: Tenants, database: AsyncEngine, pool: asyncpg.Pool
) -> None:
    server = two.server
    for _ in range(2):
        await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.alice)
    await submit(server.http_url, fen=MATED, key=two.alice)
    await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.bob)
    await store(database)
    me = workers.WorkerInfo(id="worker-a", host="h1", pid=42, slots=2, engine="Stockfish 15.1")
    await workers.register(database, me, listening=True, ttl=30)
    assert await claims.claim_next(pool, "worker-a", 15) is not None

    async def stats(key: str) -> dict[str, Any]:
        answer = await post(server.http_url, STATS, key=key)
        assert "errors" not in answer, answer
        found: dict[str, Any] = answer["data"]["queueStats"]
        return found

    everyone = await stats(two.admin)
    assert everyone["queued"] + everyone["running"] == 4
    assert (everyone["running"], everyone["done"]) == (1, 1)
    assert [worker["host"] for worker in everyone["workers"]] == ["h1"]
    alice, bob = await stats(two.alice), await stats(two.bob)
    assert alice["queued"] + alice["running"] == 2
    assert alice["done"] == 1
    assert bob["queued"] + bob["running"] == 1
    assert bob["done"] == 0
    assert (everyone["workersAlive"], everyone["runningWithoutWorker"]) == (1, 0)
    for own in (alice, bob):
        assert own["workers"] == [], "hosts and process ids are an admin's to see"
        assert (own["workersAlive"], own["runningWithoutWorker"]) == (0, 0)


async def test_the_viewer_says_who_asks(
    two: Tenants, start_api: ApiFactory, pool: asyncpg.Pool
) -> None:
    quotas = tenants.Quotas(max_queued=5, engine_seconds_per_hour=100.0, weight=2.0)
    _, carol = await tenants.create(pool, "carol", quotas=quotas)
    await submit(two.server.http_url, fen=REFERENCE_FEN, timeLimit=4.0, key=carol)
    viewer = (await post(two.server.http_url, VIEWER, key=carol))["data"]["viewer"]
    assert viewer["name"] == "carol"
    assert viewer["scopes"] == ["ANALYSE"]
    assert viewer["quotas"] == {"maxQueued": 5, "engineSecondsPerHour": 100.0, "weight": 2.0}
    assert (viewer["usage"]["queued"], viewer["usage"]["running"]) == (1, 0)
    assert 95 < viewer["usage"]["engineSecondsAvailable"] <= 96.1
    assert viewer["usage"]["engineSecondsLastHour"] == 0
    admin = (await post(two.server.http_url, VIEWER, key=two.admin))["data"]["viewer"]
    assert (admin["name"], admin["scopes"]) == ("admin", ["ANALYSE", "ADMIN"])
    assert admin["quotas"] == {"maxQueued": None, "engineSecondsPerHour": None, "weight": 1.0}
    assert admin["usage"]["engineSecondsAvailable"] is None
    open_server = await start_api(
        anonymous=True, anonymous_max_queued=7, anonymous_engine_seconds_per_hour=70
    )
    anonymous = (await post(open_server.http_url, VIEWER, key=None))["data"]["viewer"]
    assert anonymous["name"] == "anonymous"
    assert anonymous["quotas"] == {"maxQueued": 7, "engineSecondsPerHour": 70.0, "weight": 1.0}


# --- quotas -------------------------------------------------------------------------


async def refusal(server: Server, key: str | None, **fields: Any) -> dict[str, Any]:
    """The one error a refused submission answers."""
    request = {"fen": REFERENCE_FEN, "fresh": True, **fields}  # a run of its own each
    body = await post(server.http_url, SUBMIT, {"input": request}, key=key)
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["path"] == ["submitAnalysis"]
    return dict(error)


async def rows_of(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        result = await connection.exec_driver_sql("SELECT count(*) FROM analyses")
        return int(result.scalar_one())


async def test_queued_work_past_the_quota_is_quota_exceeded(
    two: Tenants, pool: asyncpg.Pool, database: AsyncEngine
) -> None:
    server = two.server
    _, carol = await tenants.create(pool, "carol", quotas=tenants.Quotas(max_queued=2))
    for _ in range(2):
        await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, timeLimit=3.0, key=carol)
    error = await refusal(server, carol)
    assert error["extensions"]["code"] == "QUOTA_EXCEEDED"
    assert error["extensions"]["retryAfter"] >= 1
    assert await rows_of(database) == 2, "nothing stored"
    # Another tenant is not held back by carol's quota.
    assert (await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=two.bob))[
        "status"
    ] == "QUEUED"
    # Once one of carol's leaves the queue, she may submit again.
    first = (await post(server.http_url, LIST, {}, key=carol))["data"]["analyses"]["edges"][0]
    await post(server.http_url, CANCEL, {"id": first["node"]["id"]}, key=carol)
    assert (await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, key=carol))[
        "status"
    ] == "QUEUED"


async def test_engine_seconds_past_the_quota_are_rate_limited(
    two: Tenants, pool: asyncpg.Pool
) -> None:
    server = two.server
    quotas = tenants.Quotas(engine_seconds_per_hour=3.0)
    _, carol = await tenants.create(pool, "carol", quotas=quotas)
    await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, timeLimit=2.0, key=carol)
    error = await refusal(server, carol, timeLimit=2.0)
    assert error["extensions"]["code"] == "RATE_LIMITED"
    # One more engine second is refilled in 1 / (3 / 3600) = 1,200 s.
    assert 1_100 < error["extensions"]["retryAfter"] <= 1_201
    # Within what is left, a smaller request is taken.
    assert await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, timeLimit=0.5, key=carol)


async def test_a_position_without_legal_moves_counts_as_a_request(
    two: Tenants, pool: asyncpg.Pool
) -> None:
    server = two.server
    _, carol = await tenants.create(
        pool, "carol", quotas=tenants.Quotas(engine_seconds_per_hour=1.0)
    )
    await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, timeLimit=1.0, key=carol)
    error = await refusal(server, carol, fen=MATED)
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] > 0


async def test_anonymous_use_has_its_own_quotas(start_api: ApiFactory) -> None:
    server = await start_api(
        anonymous=True, anonymous_max_queued=1, anonymous_engine_seconds_per_hour=1
    )
    await submit(server.http_url, fen=REFERENCE_FEN, fresh=True, timeLimit=0.995, key=None)
    # 0.005 engine seconds left: a finished position's 0.01 is refilled in about 18 s.
    rate = await refusal(server, None, fen=MATED)
    assert rate["extensions"]["code"] == "RATE_LIMITED"
    assert 10 < rate["extensions"]["retryAfter"] <= 19
    queued = await refusal(server, None, timeLimit=0.001)
    assert queued["extensions"]["code"] == "QUOTA_EXCEEDED"
    assert queued["extensions"]["retryAfter"] >= 1
    # A key's own quotas apply to it, not the anonymous ones.
    assert (await submit(server.http_url, fen=REFERENCE_FEN))["status"] == "QUEUED"
