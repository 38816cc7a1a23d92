"""The GraphQL schema: root types wired to resolvers, plus error shaping.

`api/schema.graphql` is this schema printed; `python -m api.schema > api/schema.graphql`
refreshes it, and a test fails when the two drift apart.
"""

from __future__ import annotations

import sys

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from api import resolvers
from api.errors import ShapeErrors, log_unexpected
from api.types import Analysis


@strawberry.type
class Query:
    analysis: Analysis | None = strawberry.field(
        resolver=resolvers.analysis, description="The analysis with this id; null if none."
    )


@strawberry.type
class Mutation:
    submit_analysis: Analysis = strawberry.mutation(
        resolver=resolvers.submit_analysis,
        description="Queue a position for analysis; returns at once (status QUEUED).",
    )
    cancel_analysis: Analysis = strawberry.mutation(
        resolver=resolvers.cancel_analysis,
        description=(
            "Cancel an analysis: QUEUED ones at once, RUNNING ones when their engine stops;"
            " a finished analysis is returned unchanged."
        ),
    )


@strawberry.type
class Subscription:
    analysis_completed = strawberry.subscription(
        resolver=resolvers.analysis_completed,
        description="Emits the analysis once, when DONE, FAILED or CANCELED, then completes.",
    )


class Schema(strawberry.Schema):
    """Logs only what it masks: client errors are the client's business, not the log's."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected(errors, execution_context)


schema = Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=[ShapeErrors])


if __name__ == "__main__":
    sys.stdout.write(schema.as_str() + "\n")
