"""The ASGI application: FastAPI serving the GraphQL schema at /graphql.

HTTP queries and mutations, WebSocket subscriptions over `graphql-transport-ws` and the
legacy `graphql-ws`, and GraphiQL on GET /graphql from a browser. WebSocket connections
to /graphql go straight to their view (`api.router.WebSocketView`), past FastAPI's
routing and the HTTP middleware, which has nothing to do for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)

from api import health, ide
from api.context import Context, Services
from api.events import NotificationHub
from api.http import GraphQLOverHTTP
from api.metrics import ApiMetrics
from api.persisted_queries import PersistedQueries
from api.protection import LimitBodySize
from api.request_ids import RequestIds
from api.router import Router, WebSocketView
from api.schema import build_schema
from api.settings import ApiSettings
from db.session import create_engine
from db.settings import DatabaseSettings

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"


class App(FastAPI):
    """FastAPI, handing WebSocket connections to /graphql to the WebSocket view."""

    graphql_websockets: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "websocket"
            and scope["path"] == GRAPHQL_PATH
            and self.graphql_websockets is not None
        ):
            await self.graphql_websockets(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


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
        try:
            await hub.start()
            persisted = None
            if settings.persisted_queries_size > 0:
                shared = database if settings.persisted_queries_shared else None
                persisted = PersistedQueries(settings.persisted_queries_size, shared)
            services.append(
                Services(
                    database=database,
                    hub=hub,
                    settings=settings,
                    metrics=metrics,
                    persisted=persisted,
                )
            )
            metrics.watch_subscriptions(lambda: hub.waiting)
            app.state.services = services[0]
            watch = asyncio.create_task(stop_if_failed(app, hub))
            yield
        finally:
            services.clear()
            if "watch" in locals():
                watch.cancel()
            await hub.close()
            await database.dispose()

    async def context() -> Context:
        return Context(services[0])

    metrics = ApiMetrics()
    schema = build_schema(settings, metrics)
    graphql = Router(
        schema,
        path=GRAPHQL_PATH,
        context_getter=context,
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
    app.include_router(graphql)
    if graphql.local_ide:
        ide.mount(app)
    app.include_router(health.router(lambda: services[0] if services else None))

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # Outermost first: the request id covers everything, including refusals.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(
        GraphQLOverHTTP,
        path="/graphql",
        persisted=lambda: services[0].persisted if services else None,
    )
    app.add_middleware(LimitBodySize, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIds)
    app.graphql_websockets = RequestIds(websockets)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/graphql")

    return app
