"""The ASGI application: the GraphQL schema at /graphql, FastAPI for the rest.

HTTP queries and mutations, WebSocket subscriptions over `graphql-transport-ws` and the
legacy `graphql-ws`, and GraphiQL on GET /graphql from a browser. Requests to /graphql
go straight to their views (`api.transport.http.GraphQLOverHTTP`,
`api.transport.websockets.WebSocketView`), past FastAPI's routing and middleware: a
request id, CORS and the body-size limit wrap the HTTP view directly, CORS outermost
after the id and the origin check, so that a browser can read every refusal too.
FastAPI serves the health checks, the metrics (to admin keys only), GraphiQL's files and
the review page at / (`api.transport.review_page`).
Pages on other origins are admitted or refused by `api.transport.origins`, on every
route. Who asks is `api.auth`'s business: each view identifies its callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)

from api import auth, health
from api.context import Context, Services
from api.events import NotificationHub
from api.games import openings
from api.metrics import ApiMetrics
from api.progress_board import ProgressBoard
from api.schema import build_schema
from api.settings import ApiSettings
from api.transport import ide, review_page
from api.transport.http import GraphQLOverHTTP
from api.transport.origins import (
    AnswerOptions,
    BrowserOrigins,
    RefuseOtherOrigins,
    cors,
    cors_options,
    route_methods,
)
from api.transport.persisted_queries import PersistedQueries
from api.transport.protection import LimitBodySize
from api.transport.request_ids import RequestIds
from api.transport.websockets import WebSocketView
from db.session import create_engine, create_pool
from db.settings import DatabaseSettings

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"
GRAPHQL_PATHS = (GRAPHQL_PATH, GRAPHQL_PATH + "/")
GRAPHQL_METHODS = ("GET", "POST")


class App(FastAPI):
    """FastAPI, handing requests and WebSocket connections to /graphql to their views,
    and refusing what comes past `max_connections` at once."""

    graphql_http: ASGIApp | None = None
    graphql_websockets: ASGIApp | None = None
    max_connections: int = 10_000
    open_connections: int = 0
    """HTTP requests in progress and WebSockets open now."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await super().__call__(scope, receive, send)
            return
        if self.open_connections >= self.max_connections:
            await busy(scope, receive, send)
            return
        self.open_connections += 1
        try:
            view = self.graphql_http if scope["type"] == "http" else self.graphql_websockets
            if scope["path"] in GRAPHQL_PATHS and view is not None:
                await view(scope, receive, send)
            else:
                await super().__call__(scope, receive, send)
        finally:
            self.open_connections -= 1


BUSY_RETRY_AFTER_SECONDS = 1
TRY_AGAIN_LATER = 1013
"""The WebSocket close code for a server that is overloaded."""


async def busy(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a request or WebSocket: the process holds `max_connections` already."""
    if scope["type"] == "websocket":
        # Accepted, then closed: a close before accepting reaches the client as a bare
        # 403 on the handshake, without the reason.
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": "busy"})
        return
    error = {
        "message": "the server is at its connection limit; retry shortly",
        "extensions": {"code": "SERVICE_UNAVAILABLE", "retryAfter": BUSY_RETRY_AFTER_SECONDS},
    }
    response = JSONResponse(
        {"errors": [error]},
        status_code=503,
        headers={"retry-after": str(BUSY_RETRY_AFTER_SECONDS)},
    )
    await response(scope, receive, send)


async def stop_if_failed(app: FastAPI, hub: NotificationHub) -> None:
    """Stop the process if the hub's LISTEN connection cannot be kept up: `app.state.failed`
    tells the entry point to exit with an error, for its supervisor to start a fresh one."""
    await asyncio.wait({hub.watching})
    if hub.watching.cancelled() or hub.watching.exception() is None:
        return
    log.critical("the notification listener could not be kept running; stopping")
    app.state.failed = True
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own graceful shutdown


def create_app(settings: ApiSettings, database_settings: DatabaseSettings, url: str) -> App:
    """The application for the database at `url`; connections open in its lifespan."""
    services: list[Services] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = create_engine(database_settings, url, application_name="chess-analysis-api")
        hub = NotificationHub(url, database, ping_interval=settings.listen_ping_interval)
        pool = None
        try:
            # Opened on the first submission: an idle API holds no connection for it.
            pool = await create_pool(
                database_settings, url, application_name="chess-analysis-api", min_size=0
            )
            # The opening names are read once, off the event loop, before any game asks.
            await asyncio.to_thread(openings.load)
            board = ProgressBoard(pool, watch_seconds=settings.progress_watch_seconds)
            hub.on_progress = board.notified
            await hub.start()
            board.start()
            persisted = PersistedQueries.from_settings(settings, schema, database)
            keys = auth.Keys(pool, settings)
            sockets = auth.OpenSockets(keys, settings.key_cache_seconds)
            services.append(
                Services(
                    database=database,
                    pool=pool,
                    hub=hub,
                    progress=board,
                    settings=settings,
                    metrics=metrics,
                    persisted=persisted,
                    keys=keys,
                    sockets=sockets,
                    anonymous_limit=auth.AddressLimit(settings.anonymous_per_address_per_minute),
                )
            )
            metrics.watch_subscriptions(lambda: hub.waiting)
            app.state.services = services[0]
            watch = asyncio.create_task(stop_if_failed(app, hub))
            checking_keys = asyncio.create_task(sockets.watch())
            yield
        finally:
            services.clear()
            if "watch" in locals():
                watch.cancel()
                checking_keys.cancel()
            if "board" in locals():
                await board.close()
            await hub.close()
            if pool is not None:
                await pool.close()
            await database.dispose()

    async def context() -> Context:
        return Context(services[0])

    metrics = ApiMetrics()
    schema = build_schema(settings, metrics)
    graphql = GraphQLOverHTTP(
        schema,
        context_getter=context,
        persisted=lambda: services[0].persisted if services else None,
        max_tokens=settings.max_tokens,
        graphql_ide="graphiql" if settings.graphiql else None,
        subscription_protocols=(MULTIPART_SUBSCRIPTION_PROTOCOL,),
    )
    graphql.local_ide = settings.graphiql and ide.installed()
    websockets = WebSocketView(
        schema,
        context_getter=context,
        metrics=metrics,
        graphql_ide=None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        connection_init_wait_timeout=timedelta(seconds=settings.ws_connection_init_timeout),
        keep_alive=True,
        keep_alive_interval=settings.ws_keep_alive_interval,
        max_subscriptions_per_connection=settings.ws_max_subscriptions,
        # Pages on these origins may open subscriptions, as they may call over HTTP.
        allowed_origins=settings.cors_origins,
    )
    app = App(
        title="Chess analysis", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.max_connections = settings.max_connections
    if graphql.local_ide:
        ide.mount(app)
    app.include_router(health.router(lambda: services[0] if services else None))

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page(request: Request) -> Response:
        """The metrics, for an admin key only (Prometheus: `authorization: {credentials}`)."""
        refusal = await auth.admin_refusal(services[0].keys, request.headers.get("authorization"))
        if refusal is not None:
            return refusal
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    origins = BrowserOrigins(settings.cors_origins)
    http: ASGIApp = LimitBodySize(graphql, max_bytes=settings.max_body_bytes)
    http = AnswerOptions(http, methods=lambda _scope: GRAPHQL_METHODS)
    # The other routes (health, metrics) answer browsers alike; the last added is outermost.
    app.add_middleware(AnswerOptions, methods=route_methods(app.router))
    if settings.cors_origins:
        http = cors(http, settings.cors_origins)
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_origins))
    app.graphql_http = RequestIds(RefuseOtherOrigins(http, origins))
    app.graphql_websockets = RequestIds(RefuseOtherOrigins(websockets, origins))
    app.add_middleware(RefuseOtherOrigins, origins=origins)
    app.add_middleware(LimitBodySize, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIds)

    review_page.mount(app)  # the review page at / (GraphiQL's address until it is built)

    return app
