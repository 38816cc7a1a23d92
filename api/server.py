"""How uvicorn serves the application: one place for `python -m api` and the tests."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from api.settings import ApiSettings

GRACEFUL_SHUTDOWN_SECONDS = 5

WEBSOCKET_IMPLEMENTATION = "wsproto"
"""uvicorn's wsproto protocol holds about 3 KB less per open connection than its
websockets one, which counts at thousands of waiting subscribers."""


def config(app: ASGIApp, settings: ApiSettings, *, port: int | None = None) -> uvicorn.Config:
    """uvicorn's configuration for `app` (on `port` if given, else the settings' port)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ws=WEBSOCKET_IMPLEMENTATION,
        http="httptools",
        loop="uvloop",
        timeout_keep_alive=settings.keep_alive_seconds,
        # The last line of defence against idle sockets; `api.app` refuses requests
        # and WebSockets past `max_connections` itself, with a coded answer.
        limit_concurrency=2 * settings.max_connections,
        ws_per_message_deflate=settings.ws_compression,
        # A larger message is refused (1009) while it is read, not once it is held.
        ws_max_size=settings.ws_message_limit,
    )
