"""WebSocket frames and scripts of frames, for both subprotocols (graphql-transport-ws
and graphql-ws): junk, or messages of the protocol with junk in them."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.graphql_inputs import IDS, odd_documents, submit_requests
from tests.fuzz.json_values import (
    ANY_CHARACTER,
    DEEP_JSON,
    JSON_VALUES,
    JUNK_TEXT,
    to_json,
    to_literal,
)

TRANSPORT_TYPES = ["connection_init", "ping", "pong", "subscribe", "complete"]
LEGACY_TYPES = ["connection_init", "start", "stop", "connection_terminate"]

WS_DOCUMENTS = st.one_of(
    st.uuids().map(
        lambda value: f'subscription {{ analysisCompleted(id: "{value}") {{ id status }} }}'
    ),
    IDS.map(
        lambda value: f"subscription {{ analysisCompleted(id: {to_literal(value)}) {{ id }} }}"
    ),
    submit_requests().map(lambda request: request.query),
    odd_documents().map(lambda request: request.query),
    JSON_VALUES,
)


@st.composite
def ws_frames(draw: st.DrawFn, protocol: str) -> str | bytes:
    """One frame: junk, or a message of the protocol with junk in it."""
    types = TRANSPORT_TYPES if protocol == "graphql-transport-ws" else LEGACY_TYPES
    kind = draw(
        st.sampled_from(["operation", "operation", "message", "text", "bytes", "json", "deep"])
    )
    if kind == "text":
        return draw(
            st.text(ANY_CHARACTER, max_size=30).map(
                lambda s: s.encode(errors="surrogatepass").decode(errors="replace")
            )
        )
    if kind == "bytes":
        return draw(st.binary(max_size=30))
    if kind == "json":
        return to_json(draw(JSON_VALUES))
    if kind == "deep":
        return draw(DEEP_JSON).text
    if kind == "message":
        message: dict[str, Any] = {"type": draw(st.sampled_from(types) | JUNK_TEXT)}
        message.update(
            draw(
                st.dictionaries(
                    st.sampled_from(["id", "payload"]) | JUNK_TEXT, JSON_VALUES, max_size=2
                )
            )
        )
        return to_json(message)
    payload: Any = {"query": draw(WS_DOCUMENTS)}
    if draw(st.booleans()):
        payload["variables"] = draw(JSON_VALUES | DEEP_JSON)
    if draw(st.integers(0, 4)) == 0:
        payload["operationName"] = draw(JSON_VALUES)
    if draw(st.integers(0, 5)) == 0:
        payload = draw(JSON_VALUES)
    operation = {
        "type": "subscribe" if protocol == "graphql-transport-ws" else "start",
        "id": draw(st.sampled_from(["1", "1", "2"]) | JSON_VALUES),
        "payload": payload,
    }
    return to_json(operation)


@st.composite
def ws_scripts(draw: st.DrawFn, protocol: str) -> list[str | bytes]:
    frames: list[str | bytes] = []
    if draw(st.integers(0, 4)):
        init: dict[str, Any] = {"type": "connection_init"}
        if draw(st.booleans()):
            init["payload"] = draw(JSON_VALUES)
        frames.append(to_json(init))
    frames += draw(st.lists(ws_frames(protocol), min_size=1, max_size=3))
    return frames
