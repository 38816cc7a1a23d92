"""JSON and GraphQL values for places that expect something else: tokens written as they
are (`NaN`, 5,000 digits), lone surrogates, numbers out of range, nesting too deep."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Token:
    """A JSON token written as it is: `NaN`, `Infinity`, a number of 5,000 digits."""

    text: str


def to_json(value: Any) -> str:
    """JSON text for `value`; lone surrogates leave as `\\ud800` escapes, `Token`s as is."""
    if isinstance(value, Token):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{to_json(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    return json.dumps(value)


def to_literal(value: Any) -> str:
    """GraphQL literal syntax for `value` (junk stays junk: `nan`, `Infinity`)."""
    if isinstance(value, Token):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        fields = (
            f"{key if key.isidentifier() else 'x'}: {to_literal(v)}" for key, v in value.items()
        )
        return "{" + ", ".join(fields) + "}"
    return "[" + ", ".join(to_literal(item) for item in value) + "]"


SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
ANY_CHARACTER = st.one_of(
    st.characters(),
    SURROGATES,
    st.sampled_from('\x00\t\n\r "\\/\u2028\ufeff\uffff|'),
)
JUNK_TEXT = st.text(ANY_CHARACTER, max_size=30)

NUMBER_TOKENS = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            "-1e999",
            "1e-999",
            "-0",
            "2147483648",
            "-2147483649",
            "9007199254740993",
            "1" + "0" * 400,
        ]
    ),
    st.integers(4300, 6000).map(lambda digits: "9" * digits),  # past Python's int limit
).map(Token)

NUMBERS = st.one_of(
    st.sampled_from([0, 1, 10, 11, 60, 61, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, 10**30]),
    st.integers(),
    st.floats(),
    NUMBER_TOKENS,
)

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, JUNK_TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(JUNK_TEXT, children, max_size=3)
    ),
    max_leaves=6,
)
"""Anything JSON can say, for a place that expects something else."""


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


DEEP_JSON = st.one_of(
    st.integers(3000, 20000).map(nested),
    st.integers(3000, 20000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
).map(Token)
"""Nesting past what Python's json module decodes: the recursion limit, which is 1,000
in production, but some 2,000 frames above the test's depth while Hypothesis runs an
example (in the same interpreter as the server); always past it, so that an example
fails or passes the same way every time."""
