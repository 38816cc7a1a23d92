"""Prometheus metrics of one worker process, served on `ENGINE_METRICS_PORT` when set.

worker_jobs_claimed_total, worker_jobs_finished_total,
worker_jobs_failed_total, worker_jobs_retried_total, worker_jobs_canceled_total
worker_analysis_duration_seconds      engine time of analyses that finished
worker_engine_restarts_total          Stockfish processes replaced
worker_queue_depth                    queued analyses (as of the last heartbeat)
worker_busy_slots                     slots analysing now
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)


class WorkerMetrics:
    """The metrics of one worker process, in a registry of its own."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise
        self.registry = CollectorRegistry()
        self.claimed = self._counter("worker_jobs_claimed_total", "Analyses claimed.")
        self.finished = self._counter("worker_jobs_finished_total", "Analyses finished DONE.")
        self.failed = self._counter("worker_jobs_failed_total", "Analyses that ended FAILED.")
        self.retried = self._counter(
            "worker_jobs_retried_total", "Analyses put back after an engine failure."
        )
        self.canceled = self._counter(
            "worker_jobs_canceled_total", "Running analyses stopped on a client's request."
        )
        self.engine_restarts = self._counter(
            "worker_engine_restarts_total", "Stockfish processes replaced after dying or hanging."
        )
        self.duration = Histogram(
            "worker_analysis_duration_seconds",
            "Engine time of analyses that finished.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "worker_queue_depth",
            "Queued analyses, as of the last heartbeat.",
            registry=self.registry,
        )
        self.busy_slots = Gauge("worker_busy_slots", "Slots analysing now.", registry=self.registry)

    def _counter(self, name: str, documentation: str) -> Counter:
        return Counter(name, documentation, registry=self.registry)

    def serve(self, port: int, host: str) -> None:
        """Serve /metrics on `host:port` from a background thread."""
        start_http_server(port, addr=host, registry=self.registry)
