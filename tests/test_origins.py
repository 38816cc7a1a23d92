"""Browsers on other origins: a page on an origin in `API_CORS_ORIGINS` passes the CORS
preflight and opens WebSockets; one on any other origin is refused with the setting that
admits it; a plain OPTIONS lists the methods of its path; requests without `Origin` and
from the API's own origin are served whatever the setting."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from api.settings import ApiSettings
from tests.conftest import ApiFactory, Server
from tests.graphql_client import authorization

PAGE = "http://localhost:5173"
"""A development server's page (Vite's default port)."""
PREFLIGHT = {
    "origin": PAGE,
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type",
}
REFUSED = {
    "message": f"""origin {PAGE} is not allowed: set API_CORS_ORIGINS='["{PAGE}"]'""",
    "extensions": {"code": "FORBIDDEN"},
}
TYPENAME = {"query": "{ __typename }"}
PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]


async def options(
    server: Server, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    url = server.http_url.removesuffix("/graphql") + path
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.options(url, headers=headers or {})


async def post(server: Server, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(
            server.http_url, json=TYPENAME, headers={**server.headers, **headers}
        )


async def typename_over_websocket(server: Server, protocol: str, origin: str | None) -> Any:
    """The payload of `{ __typename }` over a WebSocket opened from a page on `origin`
    (None: not from a browser, without `Origin`)."""
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"
    async with (
        asyncio.timeout(10),
        connect(
            server.ws_url,
            subprotocols=[Subprotocol(protocol)],
            origin=None if origin is None else Origin(origin),
        ) as socket,
    ):
        init = {"type": "connection_init", "payload": authorization(server.key)}
        await socket.send(json.dumps(init))
        await socket.send(json.dumps({"id": "1", "type": start, "payload": TYPENAME}))
        while True:
            message = json.loads(await socket.recv())
            if message.get("id") == "1":
                return message["payload"]


async def websocket_denial(server: Server, protocol: str, origin: str) -> tuple[int, Any]:
    """The status and JSON body of the refusal of a WebSocket from a page on `origin`."""
    with pytest.raises(InvalidStatus) as refused:
        await typename_over_websocket(server, protocol, origin)
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"null")


# --- origins not admitted -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/graphql", "/graphql/", "/healthz", "/readyz", "/metrics"])
async def test_a_preflight_from_an_origin_not_admitted_names_the_setting(
    api: Server, path: str
) -> None:
    response = await options(api, path, PREFLIGHT)
    assert response.status_code == 403
    assert response.json() == {"errors": [REFUSED]}
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_from_an_origin_not_admitted_is_denied_naming_the_setting(
    api: Server, protocol: str
) -> None:
    assert await websocket_denial(api, protocol, PAGE) == (403, {"errors": [REFUSED]})


async def test_each_refused_origin_is_logged_once_with_the_value_that_admits_it(
    start_api: ApiFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_api(cors_origins=["https://app.example"])
    with caplog.at_level(logging.WARNING, logger="api.transport.origins"):
        first = await options(server, "/graphql", PREFLIGHT)
        second = await options(server, "/healthz", PREFLIGHT)
        status, body = await websocket_denial(server, PROTOCOLS[0], PAGE)
        other = await options(server, "/graphql", {**PREFLIGHT, "origin": "https://b.example"})
    assert (first.status_code, second.status_code, status, other.status_code) == (403,) * 4
    # The answer names the setting, not the origins it admits now.
    message = first.json()["errors"][0]["message"]
    assert message == f"origin {PAGE} is not allowed: add it to the JSON list in API_CORS_ORIGINS"
    assert body["errors"][0]["message"] == message
    # The log, for whoever runs the API, has the whole value.
    assert [
        record.getMessage() for record in caplog.records if record.name == "api.transport.origins"
    ] == [
        f"refused a page on origin {PAGE}: to admit it, set"
        f""" API_CORS_ORIGINS='["https://app.example", "{PAGE}"]'""",
        "refused a page on origin https://b.example: to admit it, set"
        """ API_CORS_ORIGINS='["https://app.example", "https://b.example"]'""",
    ]


# --- an admitted origin -------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_page_on_an_admitted_origin_passes_the_preflight_and_opens_websockets(
    start_api: ApiFactory, protocol: str
) -> None:
    server = await start_api(cors_origins=[PAGE])
    for path in ("/graphql", "/healthz"):
        preflight = await options(server, path, PREFLIGHT)
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == PAGE
        assert "POST" in preflight.headers["access-control-allow-methods"]
    response = await post(server, {"origin": PAGE})
    assert response.json() == {"data": {"__typename": "Query"}}
    assert response.headers["access-control-allow-origin"] == PAGE
    assert await typename_over_websocket(server, protocol, PAGE) == {
        "data": {"__typename": "Query"}
    }


def test_the_setting_is_a_json_list_of_origins_kept_as_browsers_send_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_CORS_ORIGINS", '["HTTP://LocalHost:5173/", "https://a.example:443"]')
    assert ApiSettings().cors_origins == [PAGE, "https://a.example"]
    monkeypatch.setenv("API_CORS_ORIGINS", '["*"]')
    assert ApiSettings().cors_origins == ["*"]
    for wrong, reason in [
        (PAGE, "must be a JSON list of origins"),
        ('["localhost:5173"]', "'localhost:5173' is not an origin"),
        ('["http://localhost:5173/app"]', "'http://localhost:5173/app' is not an origin"),
    ]:
        monkeypatch.setenv("API_CORS_ORIGINS", wrong)
        with pytest.raises(ValidationError, match=reason):
            ApiSettings()


# --- OPTIONS, and who needs no setting ----------------------------------------------

PERSISTED = "/graphql?extensions=%7B%22persistedQuery%22%3A%7B%7D%7D"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/graphql", "GET, POST, OPTIONS"),
        ("/graphql/", "GET, POST, OPTIONS"),
        (PERSISTED, "GET, POST, OPTIONS"),
        ("/healthz", "GET, OPTIONS"),
        ("/readyz", "GET, OPTIONS"),
        ("/metrics", "GET, OPTIONS"),
    ],
)
@pytest.mark.parametrize("origins", [[], [PAGE]])
async def test_options_lists_the_methods_of_its_path(
    start_api: ApiFactory, origins: list[str], path: str, allow: str
) -> None:
    server = await start_api(cors_origins=origins)
    response = await options(server, path)
    assert (response.status_code, response.headers.get("allow")) == (204, allow)
    assert (await options(server, "/nowhere")).status_code == 404


@pytest.mark.parametrize("origins", [[], ["https://app.example"]])
async def test_requests_without_origin_or_from_the_api_itself_need_no_setting(
    start_api: ApiFactory, origins: list[str]
) -> None:
    server = await start_api(cors_origins=origins)
    own = f"http://127.0.0.1:{server.port}"  # GraphiQL's page, served by the API
    typename = {"data": {"__typename": "Query"}}
    for headers in ({}, {"origin": own}):
        assert (await post(server, headers)).json() == typename
    for origin in (None, own):
        assert await typename_over_websocket(server, PROTOCOLS[0], origin) == typename
    # A request that is no preflight is served, from any origin, as it always was: CORS
    # keeps its answer from a page on an origin not admitted.
    foreign = await post(server, {"origin": PAGE})
    assert foreign.json() == typename
    assert "access-control-allow-origin" not in foreign.headers
