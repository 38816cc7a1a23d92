"""`python -m api` (or `chess-analysis-api`): serve the API with uvicorn."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

import uvicorn
from pydantic import ValidationError

from api.app import create_app
from api.settings import ApiSettings
from api.transport import server
from db.settings import MISSING_URL, DatabaseSettings
from runtime import logs, usage
from runtime.logs import LogSettings

log = logging.getLogger("api")

DESCRIPTION = """\
Serve the GraphQL API (POST and GET /graphql, subscriptions over WebSockets, GraphiQL,
/healthz and /readyz) until SIGTERM or Ctrl-C. Needs DATABASE_URL, migrated with
chess-analysis-migrate; starts no database of its own. Run as many as you like on one
database; `make run` starts one with a worker and an embedded PostgreSQL."""


def arguments() -> argparse.ArgumentParser:
    """The command line: `--help` only; every setting is an environment variable."""
    return usage.parser(
        "chess-analysis-api",
        DESCRIPTION,
        [
            usage.Section(
                "API (api/settings.py)",
                ApiSettings,
                described=(
                    "host",
                    "port",
                    "graphiql",
                    "introspection",
                    "cors_origins",
                    "anonymous",
                    "forwarded_for_header",
                    "max_queued",
                    "max_connections",
                ),
            ),
            usage.Section(
                "database (db/settings.py)",
                DatabaseSettings,
                described=("url", "pool_size", "connect_timeout"),
                hidden=("data_dir",),
            ),
            usage.Section("log (runtime/logs.py)", LogSettings),
        ],
    )


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, which names the GraphiQL address once it listens."""

    def __init__(self, config: uvicorn.Config, settings: ApiSettings) -> None:
        super().__init__(config)
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.settings.graphiql:
            wildcard = self.settings.host in ("127.0.0.1", "0.0.0.0", "::")
            host = "localhost" if wildcard else self.settings.host
            log.info("GraphiQL: http://%s:%d/graphql", host, self.settings.port)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `chess-analysis-api`."""
    arguments().parse_args(argv)
    try:
        logs.configure(LogSettings())
        settings, database_settings = ApiSettings(), DatabaseSettings()
    except ValidationError as exc:
        log.error("invalid setting: %s", exc)
        return 2
    url = database_settings.url
    if not url:
        log.error(MISSING_URL)
        return 2
    app = create_app(settings, database_settings, url)
    serving = AnnouncingServer(server.config(app, settings), settings)
    serving.run()
    if getattr(app.state, "failed", False):
        return 1  # a background task could not be kept running
    return 0 if serving.started else 3  # 3: did not start (uvicorn's own convention)


if __name__ == "__main__":
    sys.exit(main())
