"""Strawberry's FastAPI router for HTTP, and the IDE choice: GraphiQL served from this
server's own files when they are installed (`api.ide`), and shown to a browser that
opens /graphql, `?query=` and all.

WebSockets are served by `api.websockets.WebSocketView` (named here too, for the
application that imports it from this module).
"""

from __future__ import annotations

from typing import Any

from strawberry.fastapi import GraphQLRouter

from api import ide
from api.context import Context
from api.websockets import WebSocketView

__all__ = ["Router", "WebSocketView"]


class Router(GraphQLRouter[Context, None]):
    """Strawberry's FastAPI router for HTTP (queries, mutations, multipart
    subscriptions), and GraphiQL served from this server when its files are installed."""

    local_ide: bool = False

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A browser opening /graphql gets the IDE, with ?query= as its starting document
        # (GraphiQL's own convention), rather than the query's result.
        return bool(
            self.graphql_ide
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
        )

    @property
    def graphql_ide_html(self) -> str:
        if self.local_ide:
            return ide.page()
        html: str = super().graphql_ide_html
        return html
