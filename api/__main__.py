"""`python -m api` (or `chess-analysis-api`): serve the API with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from api.app import create_app
from api.settings import ApiSettings
from api.transport import server
from db.settings import MISSING_URL, DatabaseSettings
from runtime import logs
from runtime.logs import LogSettings

log = logging.getLogger("api")


def main() -> int:
    """Entry point of `chess-analysis-api`."""
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
    host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host
    log.info("GraphiQL: http://%s:%d/graphql", host, settings.port)
    serving = uvicorn.Server(server.config(app, settings))
    serving.run()
    if getattr(app.state, "failed", False):
        return 1  # a background task could not be kept running
    return 0 if serving.started else 3  # 3: did not start (uvicorn's own convention)


if __name__ == "__main__":
    sys.exit(main())
