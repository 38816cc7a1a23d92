"""Small GraphQL clients for tests: HTTP via httpx, and both WebSocket subprotocols.

Each sends an API key: the one given as `key`, else the one the test server at the URL's
address was started with (`remember_key`, which the fixtures call); `key=None` sends
none. Over HTTP the key goes in `Authorization: Bearer`, over WebSockets in the
`connection_init` payload, as Apollo Client sends them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

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


class ServersKey:
    """Stands for the key of the server at the request's address."""


SERVERS_KEY = ServersKey()
Key = str | None | ServersKey

KEYS: dict[str, str] = {}
"""The key each test server was started with, by its address ("127.0.0.1:8000")."""


def _address(url: str) -> str:
    return urlsplit(url).netloc


def remember_key(url: str, key: str) -> None:
    """Send `key` to the server at `url`'s address unless told otherwise."""
    KEYS[_address(url)] = key


def forget_key(url: str) -> None:
    KEYS.pop(_address(url), None)


def key_for(url: str, key: Key = SERVERS_KEY) -> str | None:
    """The key to send to `url`: `key`, or the server's for SERVERS_KEY."""
    if isinstance(key, ServersKey):
        return KEYS.get(_address(url))
    return key


def authorization(key: str | None) -> dict[str, str]:
    """What carries `key`: the HTTP headers, or the WebSocket `connection_init` payload
    (nothing for no key)."""
    return {} if key is None else {"authorization": f"Bearer {key}"}


async def post(
    url: str, query: str, variables: dict[str, Any] | None = None, *, key: Key = SERVERS_KEY
) -> dict[str, Any]:
    """POST a GraphQL request; the decoded JSON answer."""
    async with httpx.AsyncClient(timeout=10, headers=authorization(key_for(url, key))) as client:
        response = await client.post(url, json={"query": query, "variables": variables or {}})
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    return body


async def submit(url: str, *, key: Key = SERVERS_KEY, **fields: Any) -> dict[str, Any]:
    """Submit an analysis; the stored analysis (asserts there was no error)."""
    body = await post(url, SUBMIT, {"input": fields}, key=key)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["submitAnalysis"]
    return result


async def _receive(socket: ClientConnection, timeout: float) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), timeout))
    return message


async def subscribe_transport_ws(
    url: str,
    query: str,
    variables: dict[str, Any],
    timeout: float = 30,
    *,
    key: Key = SERVERS_KEY,
) -> list[dict[str, Any]]:
    """Every message of one subscription over `graphql-transport-ws`, up to `complete`."""
    async with connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": authorization(key_for(url, key))}
        await socket.send(json.dumps(init))
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
    url: str,
    query: str,
    variables: dict[str, Any],
    timeout: float = 30,
    *,
    key: Key = SERVERS_KEY,
) -> list[dict[str, Any]]:
    """Every message of one subscription over the legacy `graphql-ws`, up to `complete`."""
    async with connect(url, subprotocols=["graphql-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": authorization(key_for(url, key))}
        await socket.send(json.dumps(init))
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
