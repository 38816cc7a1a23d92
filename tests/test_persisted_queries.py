"""Persisted queries keep only documents the schema would run, within their bounds in
bytes and entries; in PostgreSQL they expire after `PERSISTED_QUERY_DAYS`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.schema import build_schema
from api.settings import ApiSettings
from api.transport.persisted_queries import DocumentCheck, PersistedQueries, sha256
from db import persisted_queries
from tests.conftest import ApiFactory, Server

VALID = "query Typename { __typename }"

INVALID = {
    # name: (document, the code the request answers with)
    "not GraphQL": ("{ analysis(", "GRAPHQL_PARSE_FAILED"),
    "unknown field": ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
    "missing argument": ("{ analysis { id } }", "GRAPHQL_VALIDATION_FAILED"),
    "too deep": ('{ analysis(id: "x") { result { pv } } }', "GRAPHQL_VALIDATION_FAILED"),
    "too many aliases": (
        "{ " + " ".join(f"a{n}: __typename" for n in range(4)) + " }",
        "GRAPHQL_VALIDATION_FAILED",
    ),
    "too many tokens": ("{ " + "__typename " * 60 + "}", "GRAPHQL_PARSE_FAILED"),
    "introspection": ("{ __schema { queryType { name } } }", "GRAPHQL_VALIDATION_FAILED"),
}
"""Documents refused under `LIMITS`."""

LIMITS = {"max_query_depth": 1, "max_aliases": 3, "max_tokens": 50, "introspection": False}


def checked(database: AsyncEngine | None = None, **settings: Any) -> PersistedQueries:
    """A store as `PersistedQueries.from_settings` makes it for `settings`."""
    api_settings = ApiSettings(**{**LIMITS, **settings})
    schema = build_schema(api_settings)
    store = PersistedQueries.from_settings(api_settings, schema, database)
    assert store is not None
    return store


async def shared_rows(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        count = await connection.execute(text("SELECT count(*) FROM persisted_queries"))
        return int(count.scalar_one())


# --- the check ----------------------------------------------------------------------


def test_the_check_refuses_what_an_operation_would_refuse() -> None:
    settings = ApiSettings(**LIMITS)
    check = DocumentCheck(build_schema(settings), settings)
    assert check.errors(VALID) == []
    for name, (document, _) in INVALID.items():
        assert check.errors(document), name
    # With the default limits, what was too deep, too long or introspection runs.
    lenient = DocumentCheck(build_schema(), ApiSettings())
    for name in ("too deep", "too many aliases", "too many tokens", "introspection"):
        assert lenient.errors(INVALID[name][0]) == [], name


# --- the store, on a real database --------------------------------------------------


async def test_refused_documents_are_kept_nowhere(database: AsyncEngine) -> None:
    store = checked(database, persisted_queries_shared=True)
    for name, (document, _) in INVALID.items():
        assert await store.store(sha256(document), document) is False, name
    nul = "query Nul { __typename } # \x00"  # valid GraphQL, but no PostgreSQL text
    surrogate = "query Lone { __typename } # \ud800"
    assert await store.store(sha256(nul), nul) is False
    assert await store.store(sha256(surrogate), surrogate) is False
    assert await store.store(sha256(VALID), "query Other { __typename }") is False
    assert (len(store), store.stored_bytes, await shared_rows(database)) == (0, 0, 0)
    assert await store.store(sha256(VALID), VALID) is True
    assert (len(store), await shared_rows(database)) == (1, 1)
    assert await store.find(sha256(VALID)) == VALID


async def test_a_hash_of_another_shape_is_not_looked_up(database: AsyncEngine) -> None:
    store = checked(database, persisted_queries_shared=True)
    for claimed in ("\x00", "x" * 100_000, sha256(VALID).upper(), sha256(VALID)[:-1]):
        assert await store.find(claimed) is None


async def test_documents_kept_in_the_database_are_checked_when_read(
    database: AsyncEngine,
) -> None:
    # A row written before documents were checked, or by a process with other limits.
    deep = INVALID["too deep"][0]
    await persisted_queries.save(database, sha256(deep), deep)
    store = checked(database, persisted_queries_shared=True)
    assert await store.find(sha256(deep)) is None
    assert len(store) == 0
    lenient = checked(database, persisted_queries_shared=True, max_query_depth=8)
    assert await lenient.find(sha256(deep)) == deep


def document(n: int, size: int) -> str:
    """A valid document of exactly `size` bytes."""
    head = f"query Q{n} {{ __typename }} #"
    return head + "x" * (size - len(head))


async def test_the_store_is_bounded_in_bytes() -> None:
    store = checked(persisted_queries_max_bytes=1_000)
    documents = [document(n, 400) for n in range(3)]
    for query in documents:
        assert await store.store(sha256(query), query)
    assert (len(store), store.stored_bytes) == (2, 800)
    assert await store.find(sha256(documents[0])) is None  # the least recently used went
    assert await store.find(sha256(documents[1])) == documents[1]
    # Using a document keeps it: the next one pushes out the other.
    fourth = document(4, 300)
    assert await store.store(sha256(fourth), fourth)
    assert await store.find(sha256(documents[2])) is None
    assert (len(store), store.stored_bytes) == (2, 700)
    # A document larger than the whole store is not kept, and evicts nothing.
    huge = document(5, 1_001)
    assert await store.store(sha256(huge), huge) is False
    assert (len(store), store.stored_bytes) == (2, 700)
    # Bytes are UTF-8 bytes.
    wide = 'query W { __typename } # "' + "é" * 100
    assert await store.store(sha256(wide), wide)
    assert store.stored_bytes == 700 + len(wide.encode())


async def age(database: AsyncEngine, query: str, days: int) -> None:
    async with database.begin() as connection:
        await connection.execute(
            text(
                "UPDATE persisted_queries SET created_at = now() - :days * interval '1 day'"
                " WHERE sha256 = :sha256"
            ),
            {"days": days, "sha256": sha256(query)},
        )


async def test_an_expired_document_is_unknown_before_the_sweep(database: AsyncEngine) -> None:
    await checked(database, persisted_queries_shared=True).store(sha256(VALID), VALID)
    await age(database, VALID, 31)
    other_process = checked(database, persisted_queries_shared=True, persisted_query_days=30)
    assert await other_process.find(sha256(VALID)) is None
    keeps_for_ever = checked(database, persisted_queries_shared=True, persisted_query_days=0)
    assert await keeps_for_ever.find(sha256(VALID)) == VALID
    # Registered again, it starts a new term for every process.
    assert await other_process.store(sha256(VALID), VALID)
    third_process = checked(database, persisted_queries_shared=True, persisted_query_days=30)
    assert await third_process.find(sha256(VALID)) == VALID
    assert await shared_rows(database) == 1


async def test_registering_a_live_document_again_does_not_renew_it(
    database: AsyncEngine,
) -> None:
    await persisted_queries.save(database, sha256(VALID), VALID, 30)
    await age(database, VALID, 10)
    await persisted_queries.save(database, sha256(VALID), VALID, 30)
    async with database.connect() as connection:
        registered = await connection.execute(
            text("SELECT now() - created_at > interval '9 days' FROM persisted_queries")
        )
        assert registered.scalar_one() is True


# --- over the real API --------------------------------------------------------------


def persisted(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(query)}}


async def send(server: Server, method: str = "POST", **fields: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, headers=server.headers) as client:
        if method == "GET":
            params = {k: json.dumps(v) if k == "extensions" else v for k, v in fields.items()}
            return await client.get(server.http_url, params=params)
        return await client.post(server.http_url, json=fields)


async def start_checked(start_api: ApiFactory, **settings: Any) -> Server:
    """The API with the test's limits; its persisted queries are checked against them."""
    return await start_api(**{**LIMITS, **settings})


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_invalid_documents_are_answered_and_not_stored(
    start_api: ApiFactory, database: AsyncEngine, method: str
) -> None:
    server = await start_checked(start_api, persisted_queries_shared=True)
    for name, (query, code) in INVALID.items():
        registered = await send(server, method, query=query, extensions=persisted(query))
        assert registered.status_code == 200, (name, registered.text)
        errors = registered.json()["errors"]
        assert {error["extensions"]["code"] for error in errors} == {code}, (name, errors)
        again = await send(server, method, extensions=persisted(query))
        assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert (len(server.services.persisted or []), await shared_rows(database)) == (0, 0)
    registered = await send(server, method, query=VALID, extensions=persisted(VALID))
    assert registered.json() == {"data": {"__typename": "Query"}}
    assert await shared_rows(database) == 1


async def test_documents_postgresql_cannot_hold_run_without_being_stored(
    api: Server, start_api: ApiFactory, database: AsyncEngine
) -> None:
    for server in (api, await start_api(persisted_queries_shared=True)):
        nul = "query Nul { __typename } # \x00"
        answer = await send(server, query=nul, extensions=persisted(nul))
        assert answer.json() == {"data": {"__typename": "Query"}}
        unknown = await send(server, extensions=persisted(nul))
        assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert await shared_rows(database) == 0


@pytest.mark.parametrize("claimed", ["\x00", "x" * 10_000, "é"])
async def test_hashes_of_any_shape_are_answered_not_found(
    start_api: ApiFactory, claimed: str
) -> None:
    server = await start_api(persisted_queries_shared=True)
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": claimed}}
    for method in ("GET", "POST"):
        answer = await send(server, method, extensions=extensions)
        assert answer.status_code == 200, answer.text
        assert answer.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_document_that_is_not_unicode_is_a_coded_error(
    start_api: ApiFactory, database: AsyncEngine
) -> None:
    server = await start_api(persisted_queries_shared=True)
    query = "query Lone { __typename } # \ud800"  # a lone surrogate, which JSON can carry
    digest = hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()
    body = json.dumps(
        {"query": query, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}
    )
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            server.http_url,
            content=body,
            headers={"content-type": "application/json", **server.headers},
        )
    assert answer.status_code in (200, 400), answer.text
    [error] = answer.json()["errors"]
    assert error["extensions"]["code"] in ("BAD_REQUEST", "GRAPHQL_PARSE_FAILED"), error
    assert await shared_rows(database) == 0


async def test_the_api_store_is_bounded_in_bytes(start_api: ApiFactory) -> None:
    server = await start_checked(start_api, persisted_queries_max_bytes=1_000)
    documents = [document(n, 400) for n in range(3)]
    for query in documents:
        answer = await send(server, query=query, extensions=persisted(query))
        assert answer.json() == {"data": {"__typename": "Query"}}
    store = server.services.persisted
    assert store is not None and (len(store), store.stored_bytes) == (2, 800)
    evicted = await send(server, extensions=persisted(documents[0]))
    assert evicted.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_an_expired_shared_document_is_registered_again(
    start_api: ApiFactory, database: AsyncEngine
) -> None:
    first = await start_checked(start_api, persisted_queries_shared=True)
    second = await start_checked(start_api, persisted_queries_shared=True)
    await send(first, query=VALID, extensions=persisted(VALID))
    await age(database, VALID, 31)
    # Not swept yet, but past PERSISTED_QUERY_DAYS (30): unknown to a process that has
    # not kept it itself; Apollo's link then sends the document with the hash.
    expired = await send(second, extensions=persisted(VALID))
    assert expired.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await send(second, query=VALID, extensions=persisted(VALID))
    assert registered.json() == {"data": {"__typename": "Query"}}
    third = await start_checked(start_api, persisted_queries_shared=True)
    assert (await send(third, extensions=persisted(VALID))).json() == {
        "data": {"__typename": "Query"}
    }
