"""What both authentication test modules share: the queries they ask, a key no tenant
holds, the count of stored analyses, and a WebSocket client for both protocols
(open, read past keep-alives, collect a refusal, run one operation)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from db.models import Analysis
from tests.conftest import Server

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
TYPENAME = "{ __typename }"
VIEWER = "{ viewer { name scopes } }"
UNKNOWN_KEY = "cak_" + "x" * 43


async def stored(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Analysis)) or 0)


async def open_socket(
    server: Server,
    protocol: str,
    payload: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> ClientConnection:
    """A WebSocket with `connection_init` sent (`payload`, over an upgrade with
    `headers`); not yet answered."""
    socket = await connect(
        server.ws_url, subprotocols=[Subprotocol(protocol)], additional_headers=headers
    )
    await socket.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    return socket


async def next_message(socket: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The next message that is not a keep-alive; ConnectionClosed once closed."""
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = json.loads(await socket.recv())
            if message["type"] == "ping":
                await socket.send(json.dumps({"type": "pong"}))
            elif message["type"] != "ka":
                return message


async def refusal(socket: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """What the server sent before it closed `socket` (keep-alives left out), and the
    close code."""
    messages = []
    try:
        while True:
            messages.append(await next_message(socket))
    except ConnectionClosed:
        return messages, socket.close_code


async def run_operation(socket: ClientConnection, protocol: str, query: str) -> Any:
    """Run `query` on an acknowledged connection; its first result's payload."""
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    await socket.send(json.dumps({"id": "1", "type": kind, "payload": {"query": query}}))
    message = await next_message(socket)
    assert message["id"] == "1", message
    return message["payload"]
