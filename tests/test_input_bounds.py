"""Numbers at the edge, over the real API: every value out of every range, in variables
and in the document, is an error with a code (never a 500) and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import REFERENCE_FEN, Server
from tests.graphql_client import SUBMIT, post
from tests.test_operations import LIST

BOARD = REFERENCE_FEN.rsplit(" ", 2)[0]
"""The reference position without its move counters."""


async def stored(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        return int((await connection.execute(text("SELECT count(*) FROM analyses"))).scalar_one())


async def post_raw(server: Server, body: str) -> dict[str, Any]:
    """POST `body` as it is: Python's JSON reader takes NaN, Infinity and 1e400 (inf)."""
    async with httpx.AsyncClient(timeout=10, headers=server.headers) as client:
        response = await client.post(
            server.http_url, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def only_error(answer: dict[str, Any]) -> dict[str, Any]:
    assert not answer.get("data"), answer
    [error] = answer["errors"]
    assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error
    return dict(error)


@pytest.mark.parametrize(
    ("halfmove", "fullmove"), [("151", "1"), ("0", "10001"), ("9" * 32, "9" * 32)]
)
async def test_absurd_move_counters_are_refused_and_not_stored(
    api: Server, database: AsyncEngine, halfmove: str, fullmove: str
) -> None:
    answer = await post(api.http_url, SUBMIT, {"input": {"fen": f"{BOARD} {halfmove} {fullmove}"}})
    error = only_error(answer)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "fen"}
    assert error["message"].startswith("fen: impossible move counters: ")
    assert await stored(database) == 0


SUBMIT_VARIABLES = [
    # (the `input` object as raw JSON, the code, the field named when it is ours)
    ('"numMovesToReturn": 99999999999999999999', "BAD_USER_INPUT", None),
    ('"numMovesToReturn": 2147483648', "BAD_USER_INPUT", None),
    ('"numMovesToReturn": -2147483649', "BAD_USER_INPUT", None),
    ('"numMovesToReturn": 2147483647', "BAD_USER_INPUT", "numMovesToReturn"),
    ('"numMovesToReturn": -0.0', "BAD_USER_INPUT", "numMovesToReturn"),
    ('"numMovesToReturn": 1.5', "BAD_USER_INPUT", None),
    ('"numMovesToReturn": NaN', "BAD_USER_INPUT", None),
    ('"timeLimit": NaN', "BAD_USER_INPUT", None),
    ('"timeLimit": Infinity', "BAD_USER_INPUT", None),
    ('"timeLimit": -Infinity', "BAD_USER_INPUT", None),
    ('"timeLimit": 1e400', "BAD_USER_INPUT", None),
    ('"timeLimit": -0.0', "BAD_USER_INPUT", "timeLimit"),
    ('"timeLimit": 1e308', "BAD_USER_INPUT", "timeLimit"),
    ('"timeLimit": -1e-320', "BAD_USER_INPUT", "timeLimit"),
    ('"timeLimit": "1"', "BAD_USER_INPUT", None),
    ('"depthLimit": 99999999999999999999', "BAD_USER_INPUT", None),
    ('"depthLimit": NaN', "BAD_USER_INPUT", None),
    ('"depthLimit": -2147483648', "BAD_USER_INPUT", "depthLimit"),
    ('"depthLimit": 2147483647', "BAD_USER_INPUT", "depthLimit"),
]


async def test_out_of_range_numbers_in_variables_are_coded_errors(
    api: Server, database: AsyncEngine
) -> None:
    for fields, code, field in SUBMIT_VARIABLES:
        body = (
            f'{{"query": {json.dumps(SUBMIT)}, "variables": {{"input": '
            f'{{"fen": "{REFERENCE_FEN}", {fields}}}}}}}'
        )
        error = only_error(await post_raw(api, body))
        assert error["extensions"]["code"] == code, (fields, error)
        assert error["extensions"].get("field") == field, (fields, error)
    assert await stored(database) == 0


SUBMIT_LITERALS = [
    # (arguments in the document, the code, the field named when it is ours)
    ("numMovesToReturn: 99999999999999999999", "GRAPHQL_VALIDATION_FAILED", None),
    ("numMovesToReturn: -2147483649", "GRAPHQL_VALIDATION_FAILED", None),
    ("numMovesToReturn: 1.0", "GRAPHQL_VALIDATION_FAILED", None),
    ("numMovesToReturn: -0", "BAD_USER_INPUT", "numMovesToReturn"),
    ("timeLimit: 1e400", "BAD_USER_INPUT", "timeLimit"),  # read as inf, refused by us
    ("timeLimit: -0.0", "BAD_USER_INPUT", "timeLimit"),
    ("timeLimit: 1e-400", "BAD_USER_INPUT", "timeLimit"),  # read as 0.0
    ("depthLimit: 2147483648", "GRAPHQL_VALIDATION_FAILED", None),
    ("depthLimit: 0", "BAD_USER_INPUT", "depthLimit"),
]


async def test_out_of_range_numbers_in_the_document_are_coded_errors(
    api: Server, database: AsyncEngine
) -> None:
    for arguments, code, field in SUBMIT_LITERALS:
        query = (
            f'mutation {{ submitAnalysis(input: {{fen: "{REFERENCE_FEN}", {arguments}}})'
            " { id } }"
        )
        error = only_error(await post(api.http_url, query))
        assert error["extensions"]["code"] == code, (arguments, error)
        assert error["extensions"].get("field") == field, (arguments, error)
    assert await stored(database) == 0


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ("99999999999", "BAD_USER_INPUT"),
        ("-99999999999", "BAD_USER_INPUT"),
        ("NaN", "BAD_USER_INPUT"),
        ("Infinity", "BAD_USER_INPUT"),
        ("1e400", "BAD_USER_INPUT"),
        ("-0.0", "BAD_USER_INPUT"),
        ("2147483647", "BAD_USER_INPUT"),
    ],
)
async def test_out_of_range_page_sizes_are_coded_errors(api: Server, first: str, code: str) -> None:
    body = f'{{"query": {json.dumps(LIST)}, "variables": {{"first": {first}}}}}'
    error = only_error(await post_raw(api, body))
    assert error["extensions"]["code"] == code, error
    literal = await post(api.http_url, f"{{ analyses(first: {first}) {{ edges {{ cursor }} }} }}")
    assert only_error(literal)["extensions"]["code"] in (
        "BAD_USER_INPUT",
        "GRAPHQL_PARSE_FAILED",  # NaN and Infinity are not GraphQL numbers
        "GRAPHQL_VALIDATION_FAILED",
    )


@pytest.mark.parametrize("value", ["99999999999999999999", "-0.0", "NaN", "1e400", "1.5"])
async def test_numbers_given_as_ids_are_coded_errors(api: Server, value: str) -> None:
    query = "query($id: ID!) { analysis(id: $id) { id } }"
    answer = await post_raw(
        api, f'{{"query": {json.dumps(query)}, "variables": {{"id": {value}}}}}'
    )
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error


async def test_out_of_range_numbers_over_get_are_coded_errors(api: Server) -> None:
    query = "query($f: Int!) { analyses(first: $f) { edges { cursor } } }"
    async with httpx.AsyncClient(timeout=10, headers=api.headers) as client:
        for variables in ('{"f": NaN}', '{"f": 1e400}', '{"f": -0.0}', '{"f": 1e30}'):
            response = await client.get(
                api.http_url, params={"query": query, "variables": variables}
            )
            assert response.status_code == 200, response.text
            assert only_error(response.json())["extensions"]["code"] == "BAD_USER_INPUT"
