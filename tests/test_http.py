"""GraphQL over HTTP: media types, status codes, error codes, persisted queries,
multipart subscriptions."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from tests.conftest import REFERENCE_FEN, ApiFactory, Server
from tests.graphql_client import COMPLETED, submit

GRAPHQL_RESPONSE = "application/graphql-response+json"
APOLLO_ACCEPT = "application/graphql-response+json,application/json;q=0.9"
TYPENAME = "{ __typename }"


async def request(
    server: Server, method: str = "POST", *, accept: str | None = None, **kwargs: Any
) -> httpx.Response:
    """A request with `accept` as its Accept header (None: no Accept header at all) and
    the server's key."""
    async with httpx.AsyncClient(timeout=10) as client:
        del client.headers["accept"]  # httpx's own "*/*"
        headers = {**server.headers, **({"accept": accept} if accept else {})}
        return await client.request(
            method, server.http_url, headers={**headers, **kwargs.pop("headers", {})}, **kwargs
        )


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (APOLLO_ACCEPT, GRAPHQL_RESPONSE),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        ("application/json", "application/json"),
        ("*/*", "application/json"),
        (None, "application/json"),
    ],
)
async def test_answers_in_the_media_type_the_client_prefers(
    api: Server, accept: str | None, expected: str
) -> None:
    response = await request(api, accept=accept, json={"query": TYPENAME})
    assert response.status_code == 200
    assert response.headers["content-type"] == expected
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    ("query", "code"),
    [("{ bad", "GRAPHQL_PARSE_FAILED"), ("{ nope }", "GRAPHQL_VALIDATION_FAILED")],
)
async def test_request_errors_are_400_for_graphql_response_json_and_200_for_json(
    api: Server, query: str, code: str
) -> None:
    modern = await request(api, accept=APOLLO_ACCEPT, json={"query": query})
    legacy = await request(api, accept="application/json", json={"query": query})
    assert (modern.status_code, legacy.status_code) == (400, 200)
    for response in (modern, legacy):
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == code


async def test_variable_errors_are_bad_user_input(api: Server) -> None:
    response = await request(
        api,
        accept=APOLLO_ACCEPT,
        json={"query": "query($id: ID!) { analysis(id: $id) { id } }", "variables": {}},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_field_errors_keep_status_200_and_data(api: Server) -> None:
    response = await request(
        api, accept=APOLLO_ACCEPT, json={"query": '{ analysis(id: "nope") { id } }'}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"analysis": None}
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_queries_work_over_get_and_mutations_do_not(api: Server) -> None:
    query = await request(api, "GET", params={"query": TYPENAME})
    assert query.json() == {"data": {"__typename": "Query"}}
    mutation = await request(
        api,
        "GET",
        accept=APOLLO_ACCEPT,
        params={
            "query": f'mutation {{ submitAnalysis(input: {{fen: "{REFERENCE_FEN}"}}) {{ id }} }}'
        },
    )
    assert mutation.status_code == 405
    assert mutation.headers["allow"] == "POST"
    assert mutation.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def test_an_unsupported_content_type_is_415(api: Server) -> None:
    response = await request(api, content=TYPENAME, headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_an_unparseable_body_is_400(api: Server) -> None:
    response = await request(
        api, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def persisted(query: str) -> dict[str, Any]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_automatic_persisted_queries(api: Server, method: str) -> None:
    query = "query Typename { __typename }"
    extensions = persisted(query)

    async def send(**fields: Any) -> httpx.Response:
        if method == "GET":
            params = {k: json.dumps(v) if k == "extensions" else v for k, v in fields.items()}
            return await request(api, "GET", accept=APOLLO_ACCEPT, params=params)
        return await request(api, accept=APOLLO_ACCEPT, json=fields)

    unknown = await send(extensions=extensions)
    assert unknown.status_code == 200
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await send(query=query, extensions=extensions)
    assert registered.json() == {"data": {"__typename": "Query"}}
    known = await send(extensions=extensions)
    assert known.json() == {"data": {"__typename": "Query"}}


async def test_a_hash_that_does_not_match_its_query_is_400(api: Server) -> None:
    response = await request(
        api, json={"query": TYPENAME, "extensions": persisted("{ something { else } }")}
    )
    assert response.status_code == 400
    assert "does not match" in response.json()["errors"][0]["message"]


async def test_the_persisted_query_store_is_bounded(start_api: ApiFactory) -> None:
    server = await start_api(persisted_queries_size=2)
    queries = [f"query Q{n} {{ __typename }}" for n in range(3)]
    for query in queries:
        await request(server, json={"query": query, "extensions": persisted(query)})
    store = server.services.persisted
    assert store is not None and len(store) == 2
    evicted = await request(server, json={"extensions": persisted(queries[0])})
    assert evicted.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    kept = await request(server, json={"extensions": persisted(queries[2])})
    assert kept.json() == {"data": {"__typename": "Query"}}


async def test_shared_persisted_queries_reach_every_api_process(start_api: ApiFactory) -> None:
    first = await start_api(persisted_queries_shared=True)
    second = await start_api(persisted_queries_shared=True)
    query = "query Shared { __typename }"
    await request(first, json={"query": query, "extensions": persisted(query)})
    answer = await request(second, json={"extensions": persisted(query)})
    assert answer.json() == {"data": {"__typename": "Query"}}


MULTIPART = "multipart/mixed;subscriptionSpec=1.0,application/json"
APOLLO_MULTIPART = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'
"""What Apollo Client's HttpLink accepts for a subscription."""
MATED = "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3"


async def completed_over_multipart(api: Server, accept: str) -> tuple[str, str]:
    """The Content-Type and the body of `analysisCompleted` for a finished analysis."""
    done = await submit(api.http_url, fen=MATED)
    async with (
        httpx.AsyncClient(timeout=10, headers=api.headers) as client,
        client.stream(
            "POST",
            api.http_url,
            json={"query": COMPLETED, "variables": {"id": done["id"]}},
            headers={"accept": accept},
        ) as response,
    ):
        return response.headers["content-type"], (await response.aread()).decode()


async def test_subscriptions_over_http_multipart(api: Server) -> None:
    content_type, body = await completed_over_multipart(
        api, 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0'
    )
    assert content_type.startswith("multipart/mixed")
    parts = [part for part in body.split("--graphql") if '"payload"' in part]
    [payload] = [json.loads(part[part.index("{") :])["payload"] for part in parts]
    assert payload["data"]["analysisCompleted"]["status"] == "DONE"
    assert body.rstrip().endswith("--graphql--")


@pytest.mark.parametrize("accept", [MULTIPART, APOLLO_MULTIPART])
async def test_the_multipart_content_type_is_well_formed(api: Server, accept: str) -> None:
    content_type, _ = await completed_over_multipart(api, accept)
    media, *parameters = (part.strip() for part in content_type.split(";"))
    assert media == "multipart/mixed"
    assert dict(parameter.split("=", 1) for parameter in parameters) == {
        "boundary": "graphql",
        "subscriptionSpec": "1.0",
    }


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", APOLLO_ACCEPT, "text/event-stream"]
)
async def test_a_subscription_over_plain_http_names_the_ways_that_work(
    api: Server, accept: str | None
) -> None:
    query = {"query": COMPLETED, "variables": {"id": "00000000-0000-0000-0000-000000000000"}}
    response = await request(api, json=query, accept=accept)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "WebSocket" in error["message"]
    assert "`Accept: multipart/mixed;subscriptionSpec=1.0`" in error["message"]
    over_get = await request(api, "GET", params={"query": COMPLETED})
    assert over_get.status_code == 405
    assert over_get.headers["allow"] == "POST"
    assert over_get.json()["errors"][0]["message"] == error["message"]


async def test_a_multipart_subscription_that_does_not_parse_is_refused_before_it_streams(
    api: Server,
) -> None:
    response = await request(
        api, json={"query": "subscription { analysisCompleted(id: "}, accept=MULTIPART
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["message"].startswith("Syntax Error")


async def test_an_unknown_operation_name_is_a_bad_request(api: Server) -> None:
    response = await request(api, json={"query": TYPENAME, "operationName": "Missing"})
    assert response.status_code in (200, 400)
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "Missing" in error["message"]


async def test_refusals_carry_the_cors_headers_a_browser_needs(start_api: ApiFactory) -> None:
    origin = "https://app.example"
    server = await start_api(cors_origins=[origin], max_body_bytes=1_000)
    headers = {"origin": origin}
    unknown_hash = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    refusals = [
        (
            await request(
                server, content=TYPENAME, headers={**headers, "content-type": "text/plain"}
            ),
            415,
        ),
        (await request(server, json={"query": TYPENAME, "pad": "x" * 2_000}, headers=headers), 413),
        (
            await request(
                server,
                content=b"{not json",
                headers={**headers, "content-type": "application/json"},
            ),
            400,
        ),
        (await request(server, "GET", params={"query": "mutation { x }"}, headers=headers), 405),
        (await request(server, json={"extensions": unknown_hash}, headers=headers), 200),
    ]
    for response, status in refusals:
        assert response.status_code == status, response.text
        assert response.headers["access-control-allow-origin"] == origin, response.headers
        assert response.json()["errors"][0]["extensions"]["code"]
    assert refusals[-1][0].json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
