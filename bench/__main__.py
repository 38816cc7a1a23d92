"""`make bench` / `python -m bench`: every scenario, a table, and a JSON file in bench/results.

Uses `DATABASE_URL` when set, else the embedded server (started here and stopped after,
if this run started it). Every scenario gets its own database, talks to loopback only,
and is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    cache,
    end_to_end,
    engine_efficiency,
    fairness,
    fanout,
    games,
    progress_fanout,
    queue_throughput,
    scaling,
    submit_load,
)
from bench.databases import scratch, server_facts
from db import migrations
from db.settings import DatabaseSettings
from tooling import embedded_postgres

RESULTS = Path(__file__).resolve().parent / "results"


async def migrated(server_url: str, purpose: str, body: Callable[[str], Awaitable[Any]]) -> Any:
    async with scratch(server_url, purpose) as url:
        await asyncio.to_thread(migrations.upgrade, url)
        return await body(url)


def record(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # field by field, so that nested dataclasses keep their properties too
        fields = {
            field.name: record(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
        for name in dir(type(value)):
            if isinstance(getattr(type(value), name, None), property):
                fields[name] = getattr(value, name)
        return fields
    if isinstance(value, list | tuple):
        return [record(item) for item in value]
    if isinstance(value, dict):
        return {key: record(item) for key, item in value.items()}
    return value


async def main(arguments: argparse.Namespace) -> int:
    settings = DatabaseSettings()
    # the embedded server runs here: its CPU can be read from its processes
    pgdata = None if settings.url else embedded_postgres.cluster_dir(settings.data_dir)
    with embedded_postgres.serving(settings.url, settings.data_dir) as server_url:
        return await run_all(arguments, server_url, pgdata)


async def run_all(arguments: argparse.Namespace, server_url: str, pgdata: Path | None) -> int:
    logs = Path(tempfile.mkdtemp(prefix="chess-bench-"))
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "postgres": await server_facts(server_url),
        "scenarios": {},
    }
    slots = os.cpu_count() or 1
    scenarios: dict[str, Callable[[], Awaitable[Any]]] = {
        "queue_throughput": lambda: queue_throughput.run(
            server_url, arguments.jobs, arguments.claimers
        ),
        "scaling": lambda: scaling.run(server_url, pgdata, logs, arguments.jobs),
        "fairness": lambda: migrated(
            server_url, "fairness", lambda url: fairness.run(url, slots=arguments.claimers)
        ),
        "end_to_end": lambda: migrated(
            server_url,
            "e2e",
            lambda url: end_to_end.run(url, logs, arguments.analyses, arguments.clients, slots),
        ),
        "engine_efficiency": lambda: migrated(
            server_url,
            "engine",
            lambda url: engine_efficiency.run(url, logs, arguments.positions, 0.1, slots),
        ),
        "fan_out": lambda: fanout_runs(server_url, logs, arguments.subscribers),
        "submit_throughput": lambda: migrated(
            server_url, "submit", lambda url: submit_load.run(url, logs, arguments.seconds, 32)
        ),
        "cache_latency": lambda: migrated(
            server_url,
            "cache",
            lambda url: cache.latency(url, logs, arguments.cached, 32, arguments.seconds, slots),
        ),
        "shared_runs": lambda: shared_runs(server_url, logs, arguments, slots),
        "progress_fan_out": lambda: migrated(
            server_url,
            "progress",
            lambda url: progress_fanout.run(url, logs, arguments.listeners, arguments.reports),
        ),
        "game_reviews": lambda: games.run(server_url, logs, arguments.game_depth),
    }
    failed = 0
    for name, scenario in scenarios.items():
        if arguments.only and name not in arguments.only:
            continue
        started = time.perf_counter()
        sys.stderr.write(f"… {name}\n")
        try:
            result = record(await scenario())
        except Exception:
            failed += 1
            result = {"error": traceback.format_exc()}
        result_entry = {"seconds": round(time.perf_counter() - started, 1), "result": result}
        report["scenarios"][name] = result_entry
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{report['date'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    sys.stdout.write(table(report) + f"\nfull results: {path}\nprocess logs: {logs}\n")
    return 1 if failed else 0


async def fanout_runs(server_url: str, logs: Path, counts: list[int]) -> list[Any]:
    def subscribers(count: int) -> Callable[[str], Awaitable[fanout.FanOut]]:
        return lambda url: fanout.run(url, logs, count)

    return [await migrated(server_url, f"fanout{count}", subscribers(count)) for count in counts]


async def shared_runs(
    server_url: str, logs: Path, arguments: argparse.Namespace, slots: int
) -> cache.SharedRuns:
    """The same load three times, each on a fresh database: shared (in a random order),
    a search each (`fresh`), shared again with each position's requests together."""

    def load(fresh: bool, bursts: bool = False) -> Callable[[str], Awaitable[cache.Load]]:
        return lambda url: cache.load(
            url,
            logs,
            submissions=arguments.shared,
            distinct=arguments.shared_positions,
            concurrency=50,
            slots=slots,
            fresh=fresh,
            bursts=bursts,
        )

    shared = await migrated(server_url, "shared", load(False))
    fresh = await migrated(server_url, "fresh", load(True))
    bursts = await migrated(server_url, "bursts", load(False, bursts=True))
    return cache.SharedRuns(shared, fresh, bursts)


def table(report: dict[str, Any]) -> str:
    """The figures people compare, one line each."""
    lines = [
        f"PostgreSQL {report['postgres']['version']} (fsync={report['postgres']['fsync']},"
        f" synchronous_commit={report['postgres']['synchronous_commit']}),"
        f" {report['machine']['cpus']} CPUs",
        "",
    ]
    scenarios = report["scenarios"]

    def get(name: str) -> Any:
        entry = scenarios.get(name, {}).get("result")
        return None if entry is None or (isinstance(entry, dict) and "error" in entry) else entry

    if (queue := get("queue_throughput")) is not None:
        lines.extend(queue_lines(queue))
    lines.extend(scaling_lines(get("scaling")))
    if (fair := get("fairness")) is not None:
        lines.append(
            f"fairness     A queued {fair['backlog']}, B then {fair['newcomer']}, {fair['slots']}"
            f" slots, {fair['analysis_seconds'] * 1000:.0f} ms analyses: B's first started after"
            f" {fair['a_started_before_first_b']} of A's ({fair['first_b_wait_seconds']:.2f} s),"
            f" its last after {fair['a_started_before_last_b']} of A's"
            f" ({fair['last_b_wait_seconds']:.2f} s); first come first served:"
            f" {fair['first_come_first_served_wait_seconds']:.1f} s"
        )
    if (e2e := get("end_to_end")) is not None:
        latency, overhead = spread(e2e["latency_ms"]), spread(e2e["overhead_ms"])
        lines.append(
            f"end to end   {e2e['analyses']} analyses: submit {e2e['submit_rate']:.0f}/s,"
            f" completed {e2e['completion_rate']:.0f}/s; submit->event p50/p95/p99"
            f" {latency} ms, beyond engine time {overhead} ms"
        )
    if (engine := get("engine_efficiency")) is not None:
        lines.append(
            f"engine       {engine['positions']} positions at {engine['time_limit']} s:"
            f" service {engine['service_rate']:.2f}/s,"
            f" bare python-chess {engine['bare_rate']:.2f}/s (ratio {engine['ratio']:.3f}),"
            f" bare with a new game per position {engine['bare_new_game_rate']:.2f}/s"
            f" (ratio {engine['ratio_new_game']:.3f})"
        )
    for run in get("fan_out") or []:
        lines.append(
            f"fan-out      {run['subscribers']} subscribers ({run['not_connected']} never"
            f" connected): {run['events']} events,"
            f" {run['kb_per_subscriber']:.0f} KB each,"
            f" {run['database_connections']} API connections to PostgreSQL,"
            f" delivered in {run['delivery_seconds']:.2f} s"
        )
    if (submits := get("submit_throughput")) is not None:
        lines.append(
            f"submit       {submits['rate']:.0f} mutations/s from {submits['concurrency']}"
            f" connections ({submits['errors']} errors)"
        )
    if (cached := get("cache_latency")) is not None:
        lines.append(
            f"cache        {cached['submissions']} cached submissions one at a time:"
            f" p50/p95/p99 {spread(cached['latency_ms'])} ms"
            f" ({cached['not_cached']} not cached, {cached['errors']} errors);"
            f" {cached['concurrent_rate']:.0f}/s from {cached['concurrency']} connections;"
            f" {cached['searches']} search in all"
        )
    if (shared := get("shared_runs")) is not None:
        for name in ("shared", "fresh", "bursts"):
            load = shared[name]
            lines.append(
                f"{name:<12} {load['submissions']} submissions over {load['positions']}"
                f" positions, {load['concurrency']} at a time: {load['searches']} searches"
                f" ({load['cached']} cached, {load['joined']} joined,"
                f" {load['positions_searched_again']} positions searched again,"
                f" {load['positions_answered_differently']} answered differently), all done in"
                f" {load['wall_seconds']:.1f} s ({load['errors']} errors,"
                f" {load['not_done']} not done, {load['deadlocks']} deadlocks)"
            )
        lines.append(
            f"             {shared['searches_saved']:.1f}x fewer searches,"
            f" {shared['wall_time_ratio']:.1f}x shorter wall time"
        )
    if (follow := get("progress_fan_out")) is not None:
        lines.append(
            f"progress     {follow['listeners']} listeners of one search"
            f" ({follow['not_connected']} never connected), {follow['reports']} reports at"
            f" {1 / follow['interval_seconds']:.0f}/s: publish->last listener p50/p99"
            f" {follow['delivery_ms']['p50']:.1f}/{follow['delivery_ms']['p99']:.1f} ms;"
            f" {follow['delivered']} of {follow['expected']} delivered"
            f" ({follow['coalesced']} coalesced), {follow['final_events']} final events,"
            f" {follow['completed']} completed; {follow['kb_per_listener']:.0f} KB each"
        )
    lines.extend(game_lines(get("game_reviews")))
    for name, entry in scenarios.items():
        if isinstance(entry.get("result"), dict) and "error" in entry["result"]:
            lines.append(f"{name}: FAILED\n{entry['result']['error']}")
    return "\n".join(lines)


def queue_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Every setting tried, then each system's best: the median of the repeats of its best
    setting where there are some (this project and pgqueuer), else its best row."""
    lines: list[str] = []
    best: dict[str, dict[str, Any]] = {}
    repeats: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        again = " (again)" if row.get("repeat") else ""
        lines.append(
            f"queue drain  {row['system']:<15} {row['setting'] + again:<56}"
            f" {row['drain_rate']:>9.0f} jobs/s   enqueue {row['enqueue_rate']:>9.0f} jobs/s"
        )
        if row.get("repeat"):
            repeats.setdefault(row["system"], []).append(row)
        elif row["system"] not in best or row["drain_rate"] > best[row["system"]]["drain_rate"]:
            best[row["system"]] = row
    headline: dict[str, float] = {system: row["drain_rate"] for system, row in best.items()}
    for system, repeated in repeats.items():
        headline[system] = statistics.median(row["drain_rate"] for row in repeated)
    ours = headline["chess-analysis"]
    for system, rate in headline.items():
        how = f"median of {len(repeats[system])}" if system in repeats else "one run"
        setting = (repeats.get(system) or [best[system]])[0]["setting"]
        lines.append(
            f"queue best   {system:<15} {setting:<56} {rate:>9.0f} jobs/s ({how})"
            f"   ours/this {ours / rate:.2f}x"
        )
    return lines


def scaling_lines(result: dict[str, Any] | None) -> list[str]:
    """A line per drain: processes x slots, rate, the server's CPU and WAL per 1,000 jobs."""
    if result is None:
        return []
    lines = []
    for run in result["drains"]:
        cpu = run["server_cpu_ms_per_1000"]
        lines.append(
            f"scaling      {run['processes']} process{'es' * (run['processes'] > 1):<2}"
            f" x {run['slots_per_process']:>2} slots"
            f" {'claiming ahead' if run['claim_ahead'] else 'one row a slot'}:"
            f" {run['rate']:>7.0f} jobs/s; per 1,000 jobs server CPU"
            f" {'n/a' if cpu is None else f'{cpu:.0f} ms'}, WAL {run['wal_kb_per_1000']:.0f} KB;"
            f" {run['connections']} connections"
        )
    held = ", ".join(f"{name} {count}" for name, count in result["service_connections"].items())
    lines.append(f"scaling      connections held, idle: {held}")
    return lines


def game_lines(reviews: dict[str, Any] | None) -> list[str]:
    """The game reviews' lines: the yardsticks, the service's runs, where their time went."""
    if reviews is None:
        return []
    bare = reviews["bare"]
    runs = [
        f"{run['workers']} worker{'s' * (run['workers'] > 1)} x {run['slots_per_worker']}"
        f" slot{'s' * (run['slots_per_worker'] > 1)} {run['wall_seconds']:.1f} s"
        f" ({run['wall_seconds'] / reviews['ideal_seconds']:.2f}x, {run['searches']} searches;"
        f" {run['beyond_engines_seconds']:.2f} s beyond its engines;"
        f" again DONE in {1000 * max(run['again']['seconds']):.0f} ms at most,"
        f" {run['again']['searches']} searches)"
        for run in (reviews["one_worker"], reviews["two_workers"])
    ]
    parts = [
        f"{name} {excess['total']:+.2f} s = "
        + ", ".join(f"{part} {seconds:.2f}" for part, seconds in excess.items() if part != "total")
        + "; CPU s "
        + ", ".join(f"{role} {used:.1f}" for role, used in reviews[name]["cpu_seconds"].items())
        for name, excess in reviews["beyond_ideal"].items()
    ]
    return [
        f"games        {reviews['plies']} plies at depth {reviews['depth']}: bare engine"
        f" {reviews['bare_sum_seconds']:.1f} s, / {reviews['slots']} ="
        f" {reviews['ideal_seconds']:.1f} s; two bare engines {bare['parallel_seconds']:.1f} s"
        f" ({reviews['ratio_bare_parallel']:.2f}x)",
        "             " + "; ".join(runs),
        *(f"             {part}" for part in parts),
    ]


def spread(percentiles: dict[str, float]) -> str:
    return "/".join(f"{percentiles[key]:.1f}" for key in ("p50", "p95", "p99"))


def arguments_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the benchmarks.")
    parser.add_argument("--jobs", type=int, default=20_000, help="queue throughput jobs")
    parser.add_argument("--claimers", type=int, default=8, help="concurrent claimers/slots")
    parser.add_argument("--analyses", type=int, default=2_000, help="end-to-end analyses")
    parser.add_argument(
        "--clients", type=int, default=1, help="end-to-end clients, each awaiting its own"
    )
    parser.add_argument("--positions", type=int, default=200, help="engine efficiency")
    parser.add_argument("--subscribers", type=int, nargs="*", default=[5_000, 10_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="submit load duration")
    parser.add_argument("--cached", type=int, default=2_000, help="cached submissions")
    parser.add_argument("--shared", type=int, default=2_000, help="shared runs: submissions")
    parser.add_argument(
        "--shared-positions", type=int, default=100, help="shared runs: distinct positions"
    )
    parser.add_argument("--listeners", type=int, default=1_000, help="progress listeners")
    parser.add_argument("--reports", type=int, default=10, help="progress reports, 4 a second")
    parser.add_argument("--game-depth", type=int, default=18, help="game reviews: depth")
    parser.add_argument(
        "--only",
        nargs="*",
        help="run only these scenarios: queue_throughput scaling fairness end_to_end"
        " engine_efficiency fan_out submit_throughput cache_latency shared_runs"
        " progress_fan_out game_reviews",
    )
    return parser


if __name__ == "__main__":
    sys.exit(asyncio.run(main(arguments_parser().parse_args())))
