"""The GraphQL schema: root types wired to resolvers, plus error shaping.

`api/schema.graphql` is this schema printed; `python -m api.schema > api/schema.graphql`
refreshes it, and a test fails when the two drift apart.
"""

from __future__ import annotations

import sys
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from api import resolvers, subscriptions
from api.errors import ShapeErrors, log_unexpected
from api.games import resolvers as game_resolvers
from api.games.resolvers import GameAnalysisConnection
from api.games.types import GameAnalysis
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from api.transport import protection
from api.types import Analysis, AnalysisConnection, QueueStats, Viewer


@strawberry.type
class Query:
    analysis: Analysis | None = strawberry.field(
        resolver=resolvers.analysis,
        description=(
            "The analysis with this id; null if none is yours (an admin's: any; anyone's"
            " anonymous ones too)."
        ),
    )
    analyses: AnalysisConnection = strawberry.field(
        resolver=resolvers.analyses,
        description=(
            "Your analyses (an admin's: everyone's), newest first, optionally of one status"
            " (cursor pagination). Empty without a key: anonymous work is never listed."
        ),
    )
    queue_stats: QueueStats = strawberry.field(
        resolver=resolvers.queue_stats,
        description=(
            "The queue right now: all of it and its workers for an admin key; the"
            " caller's own analyses (and no workers) for any other."
        ),
    )
    viewer: Viewer = strawberry.field(
        resolver=resolvers.viewer,
        description="Who asks: the tenant of the request's key, or the anonymous one.",
    )
    game_analysis: GameAnalysis | None = strawberry.field(
        resolver=game_resolvers.game_analysis,
        description="The game with this id; null if none is yours (as for analysis).",
    )
    game_analyses: GameAnalysisConnection = strawberry.field(
        resolver=game_resolvers.game_analyses,
        description=(
            "Your games (an admin's: everyone's), newest first, optionally of one status"
            " (cursor pagination). Empty without a key."
        ),
    )


@strawberry.type
class Mutation:
    submit_analysis: Analysis = strawberry.mutation(
        resolver=resolvers.submit_analysis,
        description=(
            "Queue a position for analysis; returns at once (status QUEUED). Bad input"
            " stores nothing: each bad field is an error of its own, with code"
            " BAD_USER_INPUT and the field's name in extensions.field. Refused for now,"
            " with extensions.retryAfter in seconds: QUEUE_FULL (the whole queue),"
            " QUOTA_EXCEEDED (your queued analyses), RATE_LIMITED (your engine seconds"
            " per hour, or too many submissions from one address without a key)."
        ),
    )
    submit_game_analysis: GameAnalysis = strawberry.mutation(
        resolver=game_resolvers.submit_game_analysis,
        description=(
            "Review a game: a PGN, or a start position and moves. Returns at once; each"
            " position is analysed (through the position cache and shared runs, as batch"
            " work of your key) and the moves judged as Lichess judges them. Bad input"
            " (a PGN that does not parse, an illegal move, several games, too many plies, a"
            " variant) is BAD_USER_INPUT naming what is wrong; nothing is stored. Quotas"
            " count every position."
        ),
    )
    cancel_game_analysis: GameAnalysis = strawberry.mutation(
        resolver=game_resolvers.cancel_game_analysis,
        description=(
            "Cancel a game: CANCELED at once, its queued positions canceled, its running ones"
            " stopped (a position another request shares goes on for it)."
        ),
    )
    cancel_analysis: Analysis = strawberry.mutation(
        resolver=resolvers.cancel_analysis,
        description=(
            "Cancel an analysis: QUEUED ones at once, RUNNING ones when their engine stops;"
            " a finished analysis is returned unchanged. NOT_FOUND for an id that is not"
            " yours, as for an unknown one."
        ),
    )


@strawberry.type
class Subscription:
    analysis_completed = strawberry.subscription(
        resolver=subscriptions.analysis_completed,
        description=(
            "Emits the analysis once, when DONE, FAILED or CANCELED, then completes."
            " NOT_FOUND for an id that is not yours, as for an unknown one."
        ),
    )
    analysis_progress = strawberry.subscription(
        resolver=subscriptions.analysis_progress,
        description=(
            "Emits the analysis's search as it deepens (depth, best lines, nodes, seconds),"
            " at most a few times a second, then once more with the finished analysis,"
            " then completes. Subscribing while the search runs gives its latest state at"
            " once; after the end, the finished analysis alone. NOT_FOUND for an id that"
            " is not yours, as for an unknown one."
        ),
    )

    game_analysis_progress = strawberry.subscription(
        resolver=game_resolvers.game_analysis_progress,
        description=(
            "Emits the game now, then each time positions finish (at most four times a"
            " second; plies and progress filling in), then the finished game, then"
            " completes. NOT_FOUND for an id that is not yours."
        ),
    )


class Schema(strawberry.Schema):
    """Logs only what it masks: client errors are the client's business, not the log's."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected(errors, execution_context)


def build_schema(settings: ApiSettings | None = None, metrics: ApiMetrics | None = None) -> Schema:
    """The schema, with the protection limits of `settings` and counting into `metrics`."""
    extensions: list[Any] = []
    if metrics is not None:
        extensions.append(metrics.extension())
    if settings is not None:
        extensions.extend(protection.extensions(settings))
    extensions.append(ShapeErrors)
    built = Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions)
    if metrics is not None:
        metrics.root_fields |= root_fields(built)
    return built


def root_fields(built: Schema) -> set[str]:
    """The names of every root field of `built`."""
    graphql_schema = built._schema
    roots = (
        graphql_schema.query_type,
        graphql_schema.mutation_type,
        graphql_schema.subscription_type,
    )
    return {name for root in roots if root is not None for name in root.fields}


schema = build_schema()
"""The schema as printed in api/schema.graphql (the limits do not change its shape)."""


if __name__ == "__main__":
    sys.stdout.write(schema.as_str() + "\n")
