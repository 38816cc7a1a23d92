"""Small GraphQL clients for tests: HTTP via httpx, and both WebSocket subprotocols."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

SUBMIT = """
mutation Submit($input: SubmitAnalysisInput!) {
  submitAnalysis(input: $input) {
    id status fen numMovesToReturn timeLimit depthLimit result { rank }
  }
}
"""

ANALYSIS_FIELDS = """
  id status fen error engine createdAt startedAt finishedAt
  result { rank centipawnScore mateScore pv pvSan depth }
"""

GET = "query Get($id: ID!) { analysis(id: $id) {" + ANALYSIS_FIELDS + "} }"

COMPLETED = (
    "subscription Completed($id: ID!) { analysisCompleted(id: $id) {" + ANALYSIS_FIELDS + "} }"
)


async def post(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a GraphQL request; the decoded JSON answer."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(url, json={"query": query, "variables": variables or {}})
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    return body


async def submit(url: str, **fields: Any) -> dict[str, Any]:
    """Submit an analysis; the stored analysis (asserts there was no error)."""
    body = await post(url, SUBMIT, {"input": fields})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["submitAnalysis"]
    return result


async def _receive(socket: ClientConnection, timeout: float) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), timeout))
    return message


async def subscribe_transport_ws(
    url: str, query: str, variables: dict[str, Any], timeout: float = 30
) -> list[dict[str, Any]]:
    """Every message of one subscription over `graphql-transport-ws`, up to `complete`."""
    async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init"}))
        assert (await _receive(socket, timeout))["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables},
                }
            )
        )
        messages: list[dict[str, Any]] = []
        while True:
            message = await _receive(socket, timeout)
            if message["type"] == "ping":
                await socket.send(json.dumps({"type": "pong"}))
                continue
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages


async def subscribe_graphql_ws(
    url: str, query: str, variables: dict[str, Any], timeout: float = 30
) -> list[dict[str, Any]]:
    """Every message of one subscription over the legacy `graphql-ws`, up to `complete`."""
    async with connect(url, subprotocols=["graphql-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert (await _receive(socket, timeout))["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {"id": "1", "type": "start", "payload": {"query": query, "variables": variables}}
            )
        )
        messages: list[dict[str, Any]] = []
        while True:
            message = await _receive(socket, timeout)
            if message["type"] == "ka":
                continue
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages
