"""The printed schema in the repository is the schema the code serves."""

from __future__ import annotations

from pathlib import Path

from api.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "api" / "schema.graphql"


def test_printed_schema_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text() == schema.as_str() + "\n", (
        "api/schema.graphql is stale: run `python -m api.schema > api/schema.graphql`"
    )


def test_schema_has_the_contracted_operations() -> None:
    printed = schema.as_str()
    for line in (
        "analysis(id: ID!): Analysis",
        "submitAnalysis(input: SubmitAnalysisInput!): Analysis!",
        "analysisCompleted(id: ID!): Analysis!",
        "numMovesToReturn: Int! = 1",
        "depthLimit: Int = null",
    ):
        assert line in printed
