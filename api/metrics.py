"""Prometheus metrics of one API process, served on GET /metrics.

graphql_operations_total{type, field}            operations by root field
graphql_operation_errors_total{type, field, code} errors, by their extensions.code
graphql_operation_duration_seconds{type}         time to answer (subscriptions: to set up)
analysis_submit_duration_seconds                 submitAnalysis, validation to stored row
websocket_connections                            open WebSocket connections
graphql_active_subscriptions                     subscribers waiting on the hub
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from graphql import FieldNode, get_operation_ast
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from strawberry.extensions import SchemaExtension

UNKNOWN = "unknown"


class ApiMetrics:
    """The metrics of one API process, in a registry of its own."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise
        self.root_fields: set[str] = {"__schema", "__type", "__typename"}
        """Root field names that may appear as label values (the schema's own)."""
        self.registry = CollectorRegistry()
        self.operations = Counter(
            "graphql_operations_total",
            "GraphQL operations received, by type and root field.",
            ["type", "field"],
            registry=self.registry,
        )
        self.errors = Counter(
            "graphql_operation_errors_total",
            "Errors returned, by operation type, root field and extensions.code.",
            ["type", "field", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "graphql_operation_duration_seconds",
            "Time to answer an operation (for subscriptions: to set it up).",
            ["type"],
            registry=self.registry,
        )
        self.submit = Histogram(
            "analysis_submit_duration_seconds",
            "submitAnalysis from validation to the stored row.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.websockets = Gauge(
            "websocket_connections", "Open WebSocket connections.", registry=self.registry
        )
        self.subscriptions = Gauge(
            "graphql_active_subscriptions",
            "analysisCompleted subscribers waiting for their analysis.",
            registry=self.registry,
        )

    def watch_subscriptions(self, count: Callable[[], int]) -> None:
        """Read the number of waiting subscribers from `count` at each scrape."""
        self.subscriptions.set_function(count)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

    def extension(self) -> Callable[[], SchemaExtension]:
        """A factory of the schema extension that counts operations into these metrics."""
        return lambda: CountOperations(self)


class CountOperations(SchemaExtension):
    """Counts each operation, its errors and its duration."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self.metrics = metrics

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        kind, field = self._describe()
        self.metrics.operations.labels(kind, field).inc()
        self.metrics.duration.labels(kind).observe(time.perf_counter() - started)
        for error in getattr(self.execution_context.result, "errors", None) or []:
            code = (error.extensions or {}).get("code", "GRAPHQL_ERROR")
            self.metrics.errors.labels(kind, field, str(code)).inc()

    def _describe(self) -> tuple[str, str]:
        """The operation's type and root fields; `unknown` for what the schema does not
        have, so that clients cannot make up label values."""
        context = self.execution_context
        if context.graphql_document is None:
            return UNKNOWN, UNKNOWN
        operation = get_operation_ast(context.graphql_document, context.operation_name)
        if operation is None:
            return UNKNOWN, UNKNOWN
        fields = {
            selection.name.value
            for selection in operation.selection_set.selections
            if isinstance(selection, FieldNode)
        }
        if not fields or not fields <= self.metrics.root_fields:
            return operation.operation.value, UNKNOWN
        return operation.operation.value, ",".join(sorted(fields))
