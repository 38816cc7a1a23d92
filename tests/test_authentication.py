"""Who is asking over HTTP: keys on every kind of request (POST, GET, multipart,
persisted queries), refusals before anything runs, a revoked key, what needs no key,
/metrics and CORS on a refusal; anonymous use (over HTTP and WebSockets) and its
per-address limit; unit tests of the address limiter, bearer parsing and the key cache.
WebSocket authentication is in `tests/test_websocket_authentication.py`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api import auth
from api.errors import UnauthenticatedError
from api.settings import ApiSettings
from db import tenants
from tests.authentication_helpers import (
    PROTOCOLS,
    TRANSPORT_WS,
    TYPENAME,
    UNKNOWN_KEY,
    VIEWER,
    next_message,
    open_socket,
    refusal,
    run_operation,
    stored,
)
from tests.conftest import REFERENCE_FEN, ApiFactory, Server
from tests.graphql_client import COMPLETED, SUBMIT, authorization, post, submit
from tests.test_http import persisted

MULTIPART = "multipart/mixed;subscriptionSpec=1.0,application/json"
MATED = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"


async def send(
    server: Server,
    method: str = "POST",
    *,
    authorization_header: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request to /graphql with `authorization_header` as its Authorization (None:
    without one)."""
    headers = dict(kwargs.pop("headers", {}))
    if authorization_header is not None:
        headers["authorization"] = authorization_header
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, server.http_url, headers=headers, **kwargs)


def assert_unauthenticated(response: httpx.Response, message: str | None = None) -> None:
    """A 401 with a Bearer challenge and one UNAUTHENTICATED error, as JSON."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    assert response.headers["content-type"].startswith("application/"), response.headers
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}, error
    assert "data" not in response.json()
    if message is not None:
        assert error["message"] == message
        # RFC 6750: no key, no error; a key that does not work is an invalid token.
        challenge = response.headers["www-authenticate"]
        if message == auth.KEY_NEEDED:
            assert "error=" not in challenge
        elif message == auth.NOT_BEARER:
            assert 'error="invalid_request"' in challenge
        else:
            assert 'error="invalid_token"' in challenge


# --- HTTP ---------------------------------------------------------------------------

REQUESTS: dict[str, dict[str, Any]] = {
    "a query over POST": {"json": {"query": TYPENAME}},
    "a mutation over POST": {
        "json": {"query": SUBMIT, "variables": {"input": {"fen": REFERENCE_FEN}}}
    },
    "a query over GET": {"method": "GET", "params": {"query": TYPENAME}},
    "a multipart subscription": {
        "json": {"query": COMPLETED, "variables": {"id": str(tenants.ANONYMOUS_ID)}},
        "headers": {"accept": MULTIPART},
    },
    "a persisted query by its hash": {
        "method": "GET",
        "params": {"extensions": json.dumps(persisted(TYPENAME))},
    },
    "a persisted query registered": {
        "json": {"query": "query Registered { __typename }"}
        | {"extensions": persisted("query Registered { __typename }")}
    },
    "a body that is not JSON": {
        "content": b"{not json",
        "headers": {"content-type": "application/json"},
    },
}
"""Requests refused before they run, whatever they carry, when no usable key comes."""


@pytest.mark.parametrize("case", sorted(REQUESTS))
@pytest.mark.parametrize(
    ("given", "message"),
    [
        (None, auth.KEY_NEEDED),
        ("", auth.KEY_NEEDED),
        (f"Bearer {UNKNOWN_KEY}", auth.UNKNOWN_KEY),
        ("Basic dXNlcjpwYXNz", auth.NOT_BEARER),
        ("Bearer", auth.NOT_BEARER),
    ],
    ids=["no key", "an empty header", "an unknown key", "another scheme", "no token"],
)
async def test_without_a_usable_key_every_http_request_is_refused_before_it_runs(
    api: Server, database: AsyncEngine, case: str, given: str | None, message: str
) -> None:
    request = dict(REQUESTS[case])
    response = await send(api, request.pop("method", "POST"), authorization_header=given, **request)
    assert_unauthenticated(response, message)
    assert await stored(database) == 0
    persisted_store = api.services.persisted
    assert persisted_store is not None and len(persisted_store) == 0, "nothing registered"


async def test_a_key_works_on_every_http_request(api: Server) -> None:
    bearer = f"Bearer {api.key}"
    for case, request in REQUESTS.items():
        request = dict(request)
        response = await send(
            api, request.pop("method", "POST"), authorization_header=bearer, **request
        )
        assert response.status_code != 401, (case, response.text)
    # The scheme's name is read in any case, as RFC 9110 says.
    viewer = await send(api, authorization_header=f"bearer {api.key}", json={"query": VIEWER})
    assert viewer.json() == {"data": {"viewer": {"name": "tests", "scopes": ["ANALYSE"]}}}


async def test_a_revoked_key_is_refused_once_the_cache_forgets_it(
    start_api: ApiFactory, pool: asyncpg.Pool
) -> None:
    server = await start_api(key_cache_seconds=0.1)
    _, secret = await tenants.create(pool, "carol")
    assert (await post(server.http_url, VIEWER, key=secret))["data"]["viewer"]["name"] == "carol"
    assert await tenants.revoke(pool, "carol")
    async with asyncio.timeout(5):
        while (
            response := await send(
                server, authorization_header=f"Bearer {secret}", json={"query": VIEWER}
            )
        ).status_code != 401:
            await asyncio.sleep(0.05)
    assert_unauthenticated(response, auth.UNKNOWN_KEY)


async def test_graphiql_and_the_health_checks_need_no_key(api: Server) -> None:
    page = await send(api, "GET", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    base = api.http_url.removesuffix("/graphql")
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(base + "/healthz")).status_code == 200
        assert (await client.get(base + "/readyz")).status_code == 200


async def test_metrics_need_an_admin_key(api: Server) -> None:
    url = api.http_url.removesuffix("/graphql") + "/metrics"
    async with httpx.AsyncClient(timeout=10) as client:
        missing = await client.get(url)
        wrong = await client.get(url, headers=authorization(UNKNOWN_KEY))
        analyse = await client.get(url, headers=api.headers)
        admin = await client.get(url, headers=api.admin_headers)
    assert_unauthenticated(missing, auth.KEY_NEEDED)
    assert_unauthenticated(wrong, auth.UNKNOWN_KEY)
    assert analyse.status_code == 403
    assert analyse.json()["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert 'error="insufficient_scope"' in analyse.headers["www-authenticate"]
    assert admin.status_code == 200
    assert "graphql_operations_total" in admin.text


async def test_a_refusal_reaches_a_page_on_an_admitted_origin(start_api: ApiFactory) -> None:
    origin = "https://app.example"
    server = await start_api(cors_origins=[origin])
    async with httpx.AsyncClient(timeout=10) as client:
        preflight = await client.options(
            server.http_url,
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        refused = await client.post(
            server.http_url, json={"query": TYPENAME}, headers={"origin": origin}
        )
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert_unauthenticated(refused)
    assert refused.headers["access-control-allow-origin"] == origin
    exposed = refused.headers["access-control-expose-headers"].lower()
    assert "www-authenticate" in exposed


# --- anonymous use ------------------------------------------------------------------


async def test_anonymous_use_serves_requests_without_a_key(start_api: ApiFactory) -> None:
    server = await start_api(anonymous=True)
    body = await post(server.http_url, VIEWER, key=None)
    assert body == {"data": {"viewer": {"name": "anonymous", "scopes": ["ANALYSE"]}}}
    assert (await submit(server.http_url, fen=REFERENCE_FEN, key=None))["status"] == "QUEUED"
    for protocol in PROTOCOLS:
        socket = await open_socket(server, protocol)
        try:
            assert (await next_message(socket))["type"] == "connection_ack"
            answer = await run_operation(socket, protocol, VIEWER)
            assert answer["data"]["viewer"]["name"] == "anonymous"
        finally:
            await socket.close()
    # A key that is wrong is refused all the same: it is not taken for no key.
    assert_unauthenticated(
        await send(server, authorization_header=f"Bearer {UNKNOWN_KEY}", json={"query": VIEWER})
    )
    socket = await open_socket(server, TRANSPORT_WS, {"authorization": f"Bearer {UNKNOWN_KEY}"})
    assert (await refusal(socket))[1] == 4401


def test_anonymous_use_is_off_unless_turned_on() -> None:
    assert ApiSettings().anonymous is False
    assert ApiSettings(anonymous=True).anonymous is True


async def test_one_address_submits_a_few_times_a_minute_without_a_key(
    start_api: ApiFactory,
) -> None:
    server = await start_api(anonymous=True, anonymous_per_address_per_minute=3)
    for _ in range(3):
        await submit(server.http_url, fen=MATED, key=None)
    body = await post(server.http_url, SUBMIT, {"input": {"fen": MATED}}, key=None)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfter"] <= 60
    assert "without a key" in error["message"]
    # A key is not limited by address, and reads are not counted.
    assert (await submit(server.http_url, fen=MATED))["status"] == "DONE"
    assert (await post(server.http_url, VIEWER, key=None))["data"]["viewer"]["name"] == "anonymous"


async def test_behind_a_proxy_the_address_is_the_forwarded_headers_last_entry(
    start_api: ApiFactory,
) -> None:
    server = await start_api(
        anonymous=True,
        anonymous_per_address_per_minute=2,
        forwarded_for_header="X-Forwarded-For",
    )

    async def code(forwarded_for: str) -> str | None:
        response = await send(
            server,
            json={"query": SUBMIT, "variables": {"input": {"fen": MATED}}},
            headers={"x-forwarded-for": forwarded_for},
        )
        errors = response.json().get("errors")
        return None if errors is None else str(errors[0]["extensions"]["code"])

    # The proxy appends the address it saw; what the client wrote before it is not
    # believed, so changing it does not buy more submissions.
    assert [await code(f"198.51.100.{n}, 203.0.113.7") for n in range(3)] == [
        None,
        None,
        "RATE_LIMITED",
    ]
    assert await code("203.0.113.8") is None  # another client


def test_the_address_limit_is_a_sliding_window() -> None:
    now = [1000.0]
    limit = auth.AddressLimit(2, clock=lambda: now[0])
    assert limit.take("a") is None
    now[0] += 30
    assert limit.take("a") is None
    assert limit.take("a") == pytest.approx(30)
    assert limit.take("b") is None
    now[0] += 30
    assert limit.take("a") is None  # the first has left the window
    now[0] += 120
    assert limit.take("c") is None
    assert set(limit._events) == {"c"}, "addresses not seen for a window are forgotten"


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("Bearer cak_abc", "cak_abc"),
        ("BEARER  cak_abc ", "cak_abc"),
    ],
)
def test_the_key_is_read_from_a_bearer_value(value: str | None, secret: str | None) -> None:
    assert auth.secret_of(value) == secret


@pytest.mark.parametrize("value", ["cak_abc", "Basic cak_abc", "Bearer a b", "Bearer"])
def test_other_authorization_values_are_refused(value: str) -> None:
    with pytest.raises(UnauthenticatedError):
        auth.secret_of(value)


async def test_looked_up_keys_are_trusted_for_the_cache_time(pool: asyncpg.Pool) -> None:
    now = [0.0]
    keys = auth.Keys(pool, ApiSettings(key_cache_seconds=2), clock=lambda: now[0])
    carol, secret = await tenants.create(pool, "carol")
    assert await keys.tenant(secret) == carol
    assert await keys.tenant(UNKNOWN_KEY) is None
    assert await tenants.revoke(pool, "carol")
    now[0] = 1.9
    assert await keys.tenant(secret) == carol, "trusted for the cache time"
    now[0] = 2.0
    assert await keys.tenant(secret) is None
    # A fresh lookup (as the watch of open WebSockets makes) does not wait for the cache.
    dave, other = await tenants.create(pool, "dave")
    assert await keys.tenant(other) == dave
    assert await tenants.revoke(pool, "dave")
    assert await keys.tenant(other, fresh=True) is None
    # Lookups of one key at once share one query, and all get its answer.
    now[0] = 10
    assert await asyncio.gather(*(keys.tenant(other) for _ in range(20))) == [None] * 20
