"""GraphQL requests as a client would send them, any part of which may be junk: FENs,
submissions, ids, listing cursors, documents, the members of a request, Accept headers
and persisted-query extensions."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import chess
from hypothesis import strategies as st

from tests.conftest import REFERENCE_FEN
from tests.fuzz.json_values import (
    ANY_CHARACTER,
    DEEP_JSON,
    JSON_VALUES,
    JUNK_TEXT,
    NUMBER_TOKENS,
    NUMBERS,
    nested,
    to_literal,
)

# --------------------------------------------------------------------------- FENs

VALID_FENS = [
    REFERENCE_FEN,
    chess.STARTING_FEN,
    "rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3",  # mated
    "7k/5Q2/6K1/8/8/8/8/8 b - - 0 1",  # stalemate
    "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1",
    "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3",
]

MOVE_COUNTERS = st.one_of(
    st.integers(0, 10**40).map(str),
    st.text("0123456789", min_size=30, max_size=40),
    st.sampled_from(["-1", "+1", "1.5", "1e9", "0x10", "\u0663", "\uff11", "", "99999999999"]),
)


@st.composite
def near_valid_fens(draw: st.DrawFn) -> str:
    """A valid FEN bent a little: absurd counters, one character changed, a field off."""
    fields = draw(st.sampled_from(VALID_FENS)).split(" ")
    kind = draw(st.sampled_from(["counters", "character", "field", "spaces", "length"]))
    if kind == "counters":
        fields[4], fields[5] = draw(MOVE_COUNTERS), draw(MOVE_COUNTERS)
        return " ".join(fields)
    if kind == "field":
        index = draw(st.integers(0, 5))
        fields[index] = draw(
            st.one_of(st.text("KQkqABHahb-wx12345678/pnbrqkPNBRQK", max_size=12), JUNK_TEXT)
        )
        return " ".join(fields)
    fen = " ".join(fields)
    if kind == "spaces":
        return draw(st.sampled_from([" ", "\t", "\n", "\u00a0"])).join(fields)
    if kind == "length":  # around the 120-character bound, spaces in the middle
        return fen.replace(" ", " " * draw(st.integers(1, 30)), 1)
    at = draw(st.integers(0, len(fen)))
    return fen[:at] + draw(st.text(ANY_CHARACTER, max_size=2)) + fen[at + draw(st.integers(0, 2)) :]


FENS = st.one_of(
    st.sampled_from(VALID_FENS),
    near_valid_fens(),
    JUNK_TEXT,
    st.text(min_size=110, max_size=200),
)

# --------------------------------------------------------------------------- GraphQL

ANALYSIS_FIELDS = "id status fen numMovesToReturn timeLimit depthLimit"


@dataclass
class GraphQLRequest:
    """One GraphQL request as a client would send it; any part may be junk."""

    query: Any
    variables: Any = None
    operation_name: Any = None
    extensions: Any = None
    omit: frozenset[str] = frozenset()
    """Members left out of the request altogether."""

    def members(self) -> dict[str, Any]:
        members = {
            "query": self.query,
            "variables": self.variables,
            "operationName": self.operation_name,
            "extensions": self.extensions,
        }
        return {
            name: value
            for name, value in members.items()
            if name not in self.omit and (value is not None or name == "query")
        }


def maybe(values: st.SearchStrategy[Any], junk: st.SearchStrategy[Any] = JSON_VALUES) -> Any:
    """Mostly `values`, sometimes anything at all."""
    return st.one_of(values, values, values, junk)


@st.composite
def submission_inputs(draw: st.DrawFn) -> Any:
    """A `SubmitAnalysisInput` as variables: fields present, absent, out of range, junk."""
    fields: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        fields["fen"] = draw(maybe(FENS))
    limits = {
        "numMovesToReturn": maybe(st.integers(1, 10), NUMBERS),
        "timeLimit": maybe(st.floats(0.01, 60.0), st.one_of(NUMBERS, JSON_VALUES)),
        "depthLimit": maybe(st.none() | st.integers(1, 60), st.one_of(NUMBERS, JSON_VALUES)),
    }
    for name, values in limits.items():
        if draw(st.booleans()):
            fields[name] = draw(values)
    if not draw(st.integers(0, 9)):
        fields[draw(JUNK_TEXT)] = draw(JSON_VALUES)
    return fields if draw(st.integers(0, 9)) else draw(JSON_VALUES)


IDS = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda value: "{" + str(value).upper() + "}"),
    st.uuids().map(lambda value: value.hex),
    JUNK_TEXT,
    JSON_VALUES,
)


@st.composite
def crafted_cursors(draw: st.DrawFn) -> Any:
    """`after` values: base64 of crafted `created_at|id`, base64 of junk, junk."""
    kind = draw(st.sampled_from(["crafted", "crafted", "bytes", "text", "json"]))
    if kind == "text":
        return draw(JUNK_TEXT)
    if kind == "json":
        return draw(JSON_VALUES)
    if kind == "bytes":
        raw = draw(st.binary(max_size=60))
    else:
        offsets = st.timedeltas(
            min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
        ).map(timezone)
        created = draw(
            st.one_of(
                st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat),
                st.sampled_from(
                    [
                        "0001-01-01T00:00:00+23:59",
                        "0001-01-01T00:00:00+00:00",
                        "9999-12-31T23:59:59.999999-23:59",
                        "2024-01-01T00:00:00Z",
                        "2024-01-01",
                        "2024-02-30T00:00:00+00:00",
                    ]
                ),
                JUNK_TEXT,
            )
        )
        row_id = draw(st.one_of(st.uuids().map(str), JUNK_TEXT))
        separator = draw(st.sampled_from(["|", "|", "||", "", ","]))
        raw = f"{created}{separator}{row_id}".encode(errors="surrogatepass")
    encoded = draw(st.sampled_from([base64.urlsafe_b64encode, base64.b64encode]))(raw).decode()
    if draw(st.booleans()):
        encoded = encoded.rstrip("=")
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(encoded)))
        encoded = encoded[:at] + draw(st.text(ANY_CHARACTER, max_size=2)) + encoded[at:]
    return encoded


STATUSES = st.one_of(
    st.sampled_from(["QUEUED", "RUNNING", "DONE", "FAILED", "CANCELED"]),
    st.sampled_from(["queued", "done", "", "DONE ", "UNKNOWN"]),
    JSON_VALUES,
)

SOUP_WORDS = (
    "{ } ( ) [ ] ... $ : ! = @ # query mutation subscription fragment on analysis analyses "
    "submitAnalysis cancelAnalysis queueStats __schema __typename input fen id first after "
    'true null 1 1.5 "x" """ "\\u0000" "\\ud800" "\\u{D800}"'
)
TOKEN_SOUP = st.lists(
    st.sampled_from([*SOUP_WORDS.split(), "\ud800", "\u0000", "\ufeff"]),
    max_size=40,
).map(" ".join)


@st.composite
def submit_requests(draw: st.DrawFn) -> GraphQLRequest:
    form = draw(st.sampled_from(["input", "literal", "scalars", "aliases"]))
    if form == "input":
        return GraphQLRequest(
            "mutation Submit($input: SubmitAnalysisInput!) "
            f"{{ submitAnalysis(input: $input) {{ {ANALYSIS_FIELDS} }} }}",
            draw(st.fixed_dictionaries({"input": submission_inputs()}) | JSON_VALUES),
        )
    if form == "scalars":
        variables = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "fen": maybe(FENS),
                    "n": maybe(st.integers(1, 10), NUMBERS),
                    "t": maybe(st.floats(0.01, 60), NUMBERS),
                    "d": maybe(st.none() | st.integers(1, 60), NUMBERS),
                },
            )
        )
        return GraphQLRequest(
            "mutation($fen: String!, $n: Int! = 1, $t: Float! = 1, $d: Int) { submitAnalysis("
            "input: {fen: $fen, numMovesToReturn: $n, timeLimit: $t, depthLimit: $d}) "
            f"{{ {ANALYSIS_FIELDS} }} }}",
            variables,
        )
    count = 1 if form == "literal" else draw(st.integers(2, 3))
    fields = []
    for number in range(count):
        value = draw(submission_inputs())
        fields.append(f"a{number}: submitAnalysis(input: {to_literal(value)}) {{ id status }}")
    return GraphQLRequest("mutation { " + " ".join(fields) + " }")


@st.composite
def read_requests(draw: st.DrawFn) -> GraphQLRequest:
    form = draw(st.sampled_from(["analysis", "literal", "listing", "cancel", "stats"]))
    if form == "analysis":
        return GraphQLRequest(
            "query Get($id: ID!) { analysis(id: $id) { id status } }",
            {"id": draw(IDS)} if draw(st.integers(0, 9)) else draw(JSON_VALUES),
            draw(st.sampled_from([None, "Get", "Other"]) | JSON_VALUES),
        )
    if form == "literal":
        return GraphQLRequest(f"{{ analysis(id: {to_literal(draw(IDS))}) {{ id }} }}")
    if form == "listing":
        return GraphQLRequest(
            "query($first: Int!, $after: String, $status: AnalysisStatus) "
            "{ analyses(first: $first, after: $after, status: $status) "
            "{ edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }",
            draw(
                st.fixed_dictionaries(
                    {"first": maybe(st.integers(1, 100), NUMBERS)},
                    optional={"after": crafted_cursors(), "status": STATUSES},
                )
            ),
        )
    if form == "cancel":
        return GraphQLRequest(
            "mutation($id: ID!) { cancelAnalysis(id: $id) { id status } }", {"id": draw(IDS)}
        )
    return GraphQLRequest("{ queueStats { queued running workersAlive } }")


@st.composite
def odd_documents(draw: st.DrawFn) -> GraphQLRequest:
    """Documents that are not what they should be: junk, too deep, too long, cyclic."""
    depth = draw(st.integers(1, 3000))
    document = draw(
        st.one_of(
            JUNK_TEXT,
            TOKEN_SOUP,
            st.just("{ analyses(first: " + nested(depth, "1") + ") { pageInfo { hasNextPage } } }"),
            st.just("{" * depth + "}" * depth),
            st.just("query Q { ...A } fragment A on Query { ...B } fragment B on Query { ...A }"),
            st.just("{ " + " ".join(f"a{n}: __typename" for n in range(depth // 10)) + " }"),
            st.just('{ analysis(id: "' + "\\ud800" + '") { id } }'),
            st.just('{ analysis(id: "\ud800") { id } }'),
            st.just(
                "subscription { analysisCompleted(id: "
                + to_literal(str(uuid.uuid4()))
                + ") { id } }"
            ),
            st.just(
                "{ __schema { types { name fields { name type { name ofType { name } } } } } }"
            ),
            st.just("query A { __typename } query B { __typename }"),
        )
    )
    return GraphQLRequest(document, draw(st.none() | JSON_VALUES), draw(st.none() | JSON_VALUES))


GRAPHQL_REQUESTS = st.one_of(submit_requests(), read_requests(), odd_documents())


@st.composite
def shaped_requests(draw: st.DrawFn) -> GraphQLRequest:
    """A request whose members may also be missing or of the wrong type."""
    request = draw(GRAPHQL_REQUESTS)
    if not draw(st.integers(0, 5)):
        request.query = draw(st.one_of(JSON_VALUES, DEEP_JSON, NUMBER_TOKENS))
    if not draw(st.integers(0, 7)):
        request.variables = draw(st.one_of(JSON_VALUES, DEEP_JSON, NUMBER_TOKENS))
    if not draw(st.integers(0, 9)):
        request.extensions = draw(JSON_VALUES | DEEP_JSON)
    if not draw(st.integers(0, 9)):
        request.omit = frozenset(draw(st.sets(st.sampled_from(["query", "variables"]))))
    return request


ACCEPTS = st.sampled_from(
    [
        None,
        "application/json",
        "application/graphql-response+json",
        "application/graphql-response+json,application/json;q=0.9",
        "*/*",
        "text/html",
        "multipart/mixed;subscriptionSpec=1.0,application/json",
        "application/json;q=nan, application/graphql-response+json;q=1e999",
        "application/json;q=-1;;;,,,",
        "",
    ]
)

# --------------------------------------------------------------------------- persisted queries


def digest(document: str) -> str:
    return hashlib.sha256(document.encode(errors="surrogatepass")).hexdigest()


HASHES: dict[str, Callable[[str], str]] = {
    "exact": lambda correct: correct,
    "upper": str.upper,
    "short": lambda correct: correct[:-1],
}


@dataclass
class PersistedCase:
    """Apollo's persisted-query extension with junk in it: documents, hashes, versions.

    Each run makes its document unique (a comment with a nonce) and hashes that, so that
    a replay of an example does not find the document the first run stored.
    """

    document: str
    hashed: str | Any
    """How the hash is made from the document (a key of HASHES), or a junk hash."""
    version: Any
    send_document: bool
    """False: the hash alone (a lookup)."""
    register_first: bool
    """Send the document with its correct hash first, then this request."""
    junk_persisted_query: Any = None
    junk_extensions: Any = None
    variables: Any = None

    def requests(self) -> list[GraphQLRequest]:
        document = f"{self.document}\n# {uuid.uuid4()}"
        correct = digest(document)
        requests = []
        if self.register_first:
            extensions = {"persistedQuery": {"version": 1, "sha256Hash": correct}}
            requests.append(GraphQLRequest(document, extensions=extensions))
        made = isinstance(self.hashed, str) and self.hashed in HASHES
        sha = HASHES[self.hashed](correct) if made else self.hashed
        persisted = {"version": self.version, "sha256Hash": sha}
        if self.junk_persisted_query is not None:
            persisted = self.junk_persisted_query
        extensions = {"persistedQuery": persisted}
        if self.junk_extensions is not None:
            extensions = self.junk_extensions
        query = document if self.send_document else None
        return [*requests, GraphQLRequest(query, self.variables, extensions=extensions)]


PERSISTED_CASES = st.builds(
    PersistedCase,
    document=st.sampled_from(
        [
            "query Typename { __typename }",
            "{ queueStats { queued } }",
            "{ bad",
            "{ nope }",
            "",
            "{ __typename } # \ud800",
            "{ __typename } # \x00",
            'mutation { cancelAnalysis(id: "x") { id } }',
        ]
    )
    | JUNK_TEXT,
    hashed=st.sampled_from(list(HASHES))
    | st.text("0123456789abcdef", min_size=64, max_size=64)
    | st.sampled_from(["\x00" * 64, "\ud800" * 64])
    | JSON_VALUES,
    version=maybe(st.just(1), NUMBERS),
    send_document=st.booleans(),
    register_first=st.booleans(),
    junk_persisted_query=st.none() | st.none() | st.none() | JSON_VALUES,
    junk_extensions=st.none() | st.none() | st.none() | JSON_VALUES | DEEP_JSON,
    variables=st.none() | JSON_VALUES,
)
