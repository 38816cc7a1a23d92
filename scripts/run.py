"""`make run`: the whole service on one machine, stopped cleanly by Ctrl-C or SIGTERM.

Checks first that the API's port (and the worker's metrics port, when set) is free, and
stops at once with the variable to change when it is not. Then starts the embedded
PostgreSQL when DATABASE_URL is unset, applies the migrations, and runs one API process
and one worker process until told to stop; the GraphiQL address is printed once the API
answers `/healthz`. On the way out the API and the worker stop first (the worker finishes
what it runs), then the embedded server, if this script started it and nothing else
serves with it.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from types import FrameType

from pydantic import ValidationError

from api.settings import ApiSettings
from api.transport import review_page
from db import migrations
from db.settings import DatabaseSettings
from engine.settings import EngineSettings
from runtime import logs, usage
from tooling import embedded_postgres

STOP_TIMEOUT_SECONDS = 30
READY_TIMEOUT_SECONDS = 60
"""How long the API may take to answer `/healthz` once started."""
POLL_SECONDS = 0.2
PORTS_TRIED = 100
"""Ports above a taken one looked at for a free one to suggest."""
log = logging.getLogger("run")

DESCRIPTION = """\
`make run`: the whole service on one machine. Starts an embedded PostgreSQL under
DB_DATA_DIR when DATABASE_URL is unset, applies the migrations, then runs one API
(chess-analysis-api) and one worker (chess-analysis-worker), and prints the GraphiQL
address once the API answers. The API serves requests without a key as the anonymous
tenant (API_ANONYMOUS=true) unless API_ANONYMOUS says otherwise. Ctrl-C or SIGTERM
stops them in order, then the embedded server (unless it was running already, or
something else still serves with it).

Refuses at once, before starting anything, when PORT is taken. The log is text unless
LOG_FORMAT says otherwise. The API and the worker read every setting that
`chess-analysis-api --help` and `chess-analysis-worker --help` list."""


def arguments() -> argparse.ArgumentParser:
    """The command line: `--help` only; every setting is an environment variable."""
    return usage.parser(
        "scripts/run.py",
        DESCRIPTION,
        [
            usage.Section(
                "API (api/settings.py)",
                ApiSettings,
                described=("host", "port", "graphiql"),
                others=False,
            ),
            usage.Section(
                "database (db/settings.py)",
                DatabaseSettings,
                described=("url", "data_dir"),
                hidden=("pool_size", "max_overflow", "connect_timeout"),
            ),
            usage.Section(
                "worker (engine/settings.py)",
                EngineSettings,
                described=("stockfish_path", "slots", "metrics_port"),
                others=False,
            ),
            usage.Section("log (runtime/logs.py)", logs.LogSettings),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    arguments().parse_args(argv)
    # People read this log in a terminal: text, unless asked otherwise.
    os.environ.setdefault("LOG_FORMAT", "text")
    try:
        logs.configure(logs.LogSettings())
        database_settings = DatabaseSettings()
        api_settings, engine_settings = ApiSettings(), EngineSettings()
    except ValidationError as exc:
        log.error("invalid setting: %s", exc)
        return 2
    taken = taken_ports(api_settings, engine_settings)
    if taken:
        for message in taken:
            log.error("%s", message)
        return 2
    try:
        with embedded_postgres.serving(database_settings.url, database_settings.data_dir) as url:
            if not database_settings.url:  # a configured URL may hold a password: not logged
                log.info("embedded PostgreSQL: %s", url)
            return serve(url, api_settings)
    except embedded_postgres.EmbeddedServerError as exc:
        log.error("%s", exc)
        return 1


def taken_ports(api_settings: ApiSettings, engine_settings: EngineSettings) -> list[str]:
    """What to change for each port the service needs that something else holds."""
    # PORT wins over API_PORT when both are set (the order of the settings' aliases).
    api_variable = "API_PORT" if "API_PORT" in os.environ and "PORT" not in os.environ else "PORT"
    wanted = [(api_variable, api_settings.host, api_settings.port)]
    if engine_settings.metrics_port is not None:
        metrics = (
            "ENGINE_METRICS_PORT",
            engine_settings.metrics_host,
            engine_settings.metrics_port,
        )
        wanted.append(metrics)
    messages = []
    for variable, host, port in wanted:
        if port_taken(host, port):
            free = next(
                (
                    candidate
                    for candidate in range(port + 1, min(port + PORTS_TRIED, 65536))
                    if not port_taken(host, candidate)
                ),
                None,
            )
            suggestion = f"{variable}={free}" if free else f"{variable} to a free port"
            messages.append(
                f"port {port} is taken: set {suggestion} (or stop what listens on {port})"
            )
    return messages


def port_taken(host: str, port: int) -> bool:
    """True when something listens on `port` at `host`, as the API would bind it."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # an unknown host is the API's to report
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As uvicorn does: a port held only by connections closing (TIME_WAIT) is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def serve(url: str, settings: ApiSettings) -> int:
    """Migrate, then run a worker and an API until a signal; stop them in order."""
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("%s: stopping", signal.Signals(signum).name)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children: list[subprocess.Popen[bytes]] = []
    try:
        migrations.upgrade(url)
        env = {**os.environ, "DATABASE_URL": url}
        # A newcomer's GraphiQL and review page work without a key: anonymous use, with
        # quotas a whole game fits in (one queued analysis and its time limit per
        # position), unless set otherwise.
        api_env = {
            "API_ANONYMOUS": "true",
            "API_ANONYMOUS_MAX_QUEUED": "1000",
            "API_ANONYMOUS_ENGINE_SECONDS_PER_HOUR": "36000",
            **env,
        }
        # Own sessions: a Ctrl-C reaches this script only, which stops the children in order.
        for module, module_env in (("engine", env), ("api", api_env)):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", module], env=module_env, start_new_session=True
                )
            )
        health = f"http://{_local_address(settings.host)}:{settings.port}/healthz"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        announced = False
        while not stopping:
            exited = [child for child in children if child.poll() is not None]
            if exited:
                log.error("%s exited with %s", exited[0].args, exited[0].returncode)
                return 1
            if not announced:
                if answers(health):
                    page = f"\n  {page_banner(settings)}" if review_page.built() else ""
                    print(f"\n  {banner(settings)}   (Ctrl-C to stop){page}\n", flush=True)
                    announced = True
                elif time.monotonic() > deadline:
                    log.error("the API did not answer %s in %d s", health, READY_TIMEOUT_SECONDS)
                    return 1
            time.sleep(POLL_SECONDS)
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %d s; killing it", child.args, STOP_TIMEOUT_SECONDS)
                child.kill()
                child.wait()


def answers(url: str) -> bool:
    """True when `url` answers 200 within a second."""
    # No proxy: the API is on this machine, whatever HTTP_PROXY says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1) as response:
            return int(response.status) == 200
    except (OSError, http.client.HTTPException):
        return False


def banner(settings: ApiSettings) -> str:
    """The line that tells where the API is: its GraphiQL IDE, unless that is off."""
    address = f"{_browsed(settings)}/graphql"
    return f"GraphiQL: {address}" if settings.graphiql else f"API: {address}"


def page_banner(settings: ApiSettings) -> str:
    """The line that tells where the game review page is (when it has been built)."""
    return f"Review page: {_browsed(settings)}/"


def _browsed(settings: ApiSettings) -> str:
    """The API's address as a browser on this machine reaches it."""
    host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"


def _local_address(host: str) -> str:
    """Where to reach a server listening on `host` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main())
