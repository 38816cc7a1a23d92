"""The GraphQL API over real HTTP, with a real worker and Stockfish behind it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Analysis
from tests.conftest import REFERENCE_FEN, Server
from tests.graphql_client import (
    COMPLETED,
    GET,
    SUBMIT,
    post,
    submit,
    subscribe_graphql_ws,
    subscribe_transport_ws,
)


async def rows(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(Analysis))).scalar_one()
        )


@pytest.mark.usefixtures("worker")
async def test_reference_position_through_mutation_and_query(api: Server) -> None:
    submitted = await submit(api.http_url, fen=REFERENCE_FEN, numMovesToReturn=2, timeLimit=2.0)
    assert submitted["status"] == "QUEUED"
    assert submitted["result"] is None
    # Wait for completion with the subscription, then read it with the query.
    messages = await subscribe_transport_ws(api.ws_url, COMPLETED, {"id": submitted["id"]})
    assert [message["type"] for message in messages] == ["next", "complete"]
    body = await post(api.http_url, GET, {"id": submitted["id"]})
    analysis = body["data"]["analysis"]
    assert analysis["status"] == "DONE"
    assert analysis["engine"].startswith("Stockfish")
    best = analysis["result"][0]
    assert best["rank"] == 1
    assert best["mateScore"] == -2
    assert best["centipawnScore"] is None
    assert best["pv"][:3] == ["c2c1", "e5e1", "c1e1"]
    assert best["pvSan"][:3] == ["Rc1+", "Re1", "Rxe1#"]
    assert best["depth"] > 0
    assert [line["rank"] for line in analysis["result"]] == [1, 2]
    assert analysis["startedAt"] <= analysis["finishedAt"]


async def test_submit_returns_at_once_without_a_worker(api: Server, database: AsyncEngine) -> None:
    submitted = await submit(api.http_url, fen=REFERENCE_FEN, timeLimit=30.0)
    assert submitted["status"] == "QUEUED"
    assert (submitted["numMovesToReturn"], submitted["timeLimit"]) == (1, 30.0)
    assert submitted["depthLimit"] is None
    assert await rows(database) == 1


async def test_mate_on_the_board_is_done_at_submit(api: Server) -> None:
    mated = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"
    submitted = await submit(api.http_url, fen=mated)
    assert submitted["status"] == "DONE"
    assert submitted["result"] == []


async def test_unknown_id_is_null(api: Server) -> None:
    body = await post(api.http_url, GET, {"id": "00000000-0000-0000-0000-000000000000"})
    assert body == {"data": {"analysis": None}}


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"fen": "garbage"}, "fen: not a valid FEN"),
    ({"fen": "8/8/8/8/8/8/8/8 w - - 0 1"}, "fen: impossible position"),
    ({"fen": "4k3/8/8/8/8/8/8/4K2r b - - 0 1"}, "fen: impossible position"),
    ({"fen": "P3k3/8/8/8/8/8/8/4K3 w - - 0 1"}, "fen: impossible position"),
    ({"fen": "4k3/8/8/8/8/8/8/4K3 w Q - 0 1"}, "fen: impossible position"),
    ({"fen": REFERENCE_FEN, "numMovesToReturn": 0}, "numMovesToReturn: must be"),
    ({"fen": REFERENCE_FEN, "numMovesToReturn": 1000}, "numMovesToReturn: must be"),
    ({"fen": REFERENCE_FEN, "timeLimit": 0}, "timeLimit: must be"),
    ({"fen": REFERENCE_FEN, "timeLimit": 3600}, "timeLimit: must be"),
    ({"fen": REFERENCE_FEN, "depthLimit": 0}, "depthLimit: must be"),
    ({"fen": REFERENCE_FEN, "depthLimit": 99}, "depthLimit: must be"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_INPUTS)
async def test_bad_input_is_refused_and_nothing_is_stored(
    api: Server, database: AsyncEngine, fields: dict[str, Any], message: str
) -> None:
    body = await post(api.http_url, SUBMIT, {"input": fields})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith(message), error["message"]
    assert await rows(database) == 0
    # The server stays healthy.
    assert (await submit(api.http_url, fen=REFERENCE_FEN))["status"] == "QUEUED"


THREE_MISTAKES = {"fen": "garbage", "numMovesToReturn": 0, "timeLimit": 0}


def assert_every_mistake(errors: list[dict[str, Any]]) -> None:
    """One error for each bad field of THREE_MISTAKES, in the order of the input."""
    assert [error["extensions"] for error in errors] == [
        {"code": "BAD_USER_INPUT", "field": field}
        for field in ("fen", "numMovesToReturn", "timeLimit")
    ]
    assert [error["message"].split(":")[0] for error in errors] == [
        "fen",
        "numMovesToReturn",
        "timeLimit",
    ]
    assert errors[1]["message"] == "numMovesToReturn: must be between 1 and 10"
    for error in errors:  # each where the resolver is, as a single error would be
        assert error["path"] == ["submitAnalysis"]
        assert error["locations"] == [{"line": 3, "column": 3}]


async def test_every_bad_field_is_its_own_error(api: Server, database: AsyncEngine) -> None:
    body = await post(api.http_url, SUBMIT, {"input": {**THREE_MISTAKES, "depthLimit": 99}})
    assert body["data"] is None
    assert [error["extensions"]["field"] for error in body["errors"]] == [
        "fen",
        "numMovesToReturn",
        "timeLimit",
        "depthLimit",
    ]
    body = await post(api.http_url, SUBMIT, {"input": THREE_MISTAKES})
    assert_every_mistake(body["errors"])
    assert await rows(database) == 0


async def test_every_bad_field_is_its_own_error_over_websockets(
    api: Server, database: AsyncEngine
) -> None:
    variables = {"input": THREE_MISTAKES}
    [result, complete] = await subscribe_transport_ws(api.ws_url, SUBMIT, variables)
    assert (result["type"], complete["type"]) == ("next", "complete")
    assert result["payload"]["data"] is None
    assert_every_mistake(result["payload"]["errors"])
    [result, complete] = await subscribe_graphql_ws(api.ws_url, SUBMIT, variables)
    assert (result["type"], complete["type"]) == ("data", "complete")
    assert_every_mistake(result["payload"]["errors"])
    assert await rows(database) == 0


async def test_malformed_id_is_bad_input(api: Server) -> None:
    body = await post(api.http_url, GET, {"id": "not-an-id"})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("id: ")


async def test_unexpected_errors_are_masked_and_logged(
    api: Server, database: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    # Break the table under the API: a real failure the resolver does not expect.
    async with database.begin() as connection:
        await connection.exec_driver_sql("ALTER TABLE analyses RENAME COLUMN fen TO fen_gone")
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            api.http_url,
            json={"query": SUBMIT, "variables": {"input": {"fen": REFERENCE_FEN}}},
            headers={"X-Request-ID": "trace-me-42", **api.headers},
        )
    [error] = response.json()["errors"]
    assert error["message"] == "Internal server error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "trace-me-42"}
    assert response.headers["x-request-id"] == "trace-me-42"
    assert "fen_gone" not in response.text
    logged = [record for record in caplog.records if "unexpected error" in record.message]
    assert logged and logged[0].request_id == "trace-me-42"  # type: ignore[attr-defined]


async def test_graphiql_is_served(api: Server) -> None:
    # Without a key: the IDE sends one with each operation, from its headers editor.
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(api.http_url, headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


@pytest.mark.usefixtures("worker")
async def test_concurrent_submissions_all_complete(api: Server) -> None:
    submitted = await asyncio.gather(
        *(submit(api.http_url, fen=REFERENCE_FEN, depthLimit=3) for _ in range(10))
    )
    results = await asyncio.gather(
        *(subscribe_transport_ws(api.ws_url, COMPLETED, {"id": s["id"]}) for s in submitted)
    )
    assert [r[0]["payload"]["data"]["analysisCompleted"]["status"] for r in results] == [
        "DONE"
    ] * 10
