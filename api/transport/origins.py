"""Browsers on other origins, on every route.

A page on an origin in `API_CORS_ORIGINS` may call the API (CORS) and open WebSockets. A
CORS preflight or a WebSocket handshake from any other origin is refused with 403 and a
JSON error that names the setting admitting it, and the first refusal of each origin is
logged with the value to set (`RefuseOtherOrigins`). A plain `OPTIONS` is answered 204
with the methods of its path (`AnswerOptions`). Requests without `Origin` (not from a
browser) and from the API's own origin (GraphiQL) are served whatever the setting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from typing import Any

from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.routing import Match, Router
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.http.websocket_origin import is_same_origin

from api.settings import CORS_ORIGINS_VARIABLE

log = logging.getLogger(__name__)


def cors_options(origins: list[str]) -> dict[str, Any]:
    """What browsers on `origins` may do: call (with any headers, `Authorization` among
    them: a preflight is answered with the headers it asks for) and read answers, errors
    and refusals, with the headers that explain them."""
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST", "OPTIONS"],
        "allow_headers": ["*"],
        "expose_headers": ["X-Request-ID", "WWW-Authenticate", "Retry-After"],
    }


def cors(app: ASGIApp, origins: list[str]) -> ASGIApp:
    return CORSMiddleware(app, **cors_options(origins))


class BrowserOrigins:
    """The origins whose pages may call the API and open WebSockets (the settings'
    `cors_origins`), and the refusal of a page on any other: 403, naming the setting
    that admits it. The first refusal of each origin is logged, with the value that
    admits it as well as the origins admitted now (the answer does not list those)."""

    REMEMBERED = 1_000
    """Origins whose refusal has been logged, kept so that each is logged once; past this
    many the record starts afresh, so that made-up origins cannot fill the memory."""

    def __init__(self, origins: list[str]) -> None:
        self.origins = origins
        self._logged: set[str] = set()

    def admits(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def refusal(self, origin: str) -> JSONResponse:
        if self.origins:
            advice = f"add it to the JSON list in {CORS_ORIGINS_VARIABLE}"
        else:
            advice = f"set {CORS_ORIGINS_VARIABLE}='{json.dumps([origin])}'"
        message = f"origin {origin} is not allowed: {advice}"
        if origin not in self._logged:
            if len(self._logged) >= self.REMEMBERED:
                self._logged.clear()
            self._logged.add(origin)
            admitting = json.dumps([*self.origins, origin])
            log.warning(
                "refused a page on origin %s: to admit it, set %s='%s'",
                origin,
                CORS_ORIGINS_VARIABLE,
                admitting,
            )
        error = {"message": message, "extensions": {"code": "FORBIDDEN"}}
        return JSONResponse({"errors": [error]}, status_code=403)


class RefuseOtherOrigins:
    """ASGI middleware, outside CORS and the views: refuses a CORS preflight (`OPTIONS`
    with `Access-Control-Request-Method`) or a WebSocket handshake from an origin that
    `origins` does not admit, with `BrowserOrigins.refusal` (over the WebSocket denial
    response where the server has it, else as a bare 403). A handshake from the API's
    own origin passes. Other requests pass whatever their `Origin`: a browser sends it
    on same-origin POSTs too, and CORS keeps the answers to other origins' requests from
    their pages."""

    def __init__(self, app: ASGIApp, origins: BrowserOrigins) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = self.refused(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        refusal = self.origins.refusal(origin)
        if scope["type"] == "http":
            await refusal(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(refusal)
        else:
            await websocket.close(WS_1008_POLICY_VIOLATION)

    def refused(self, scope: Scope) -> str | None:
        """The origin of a preflight or handshake to refuse; None to let it pass."""
        if scope["type"] not in ("http", "websocket"):
            return None
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or self.origins.admits(origin):
            return None
        if scope["type"] == "http":
            preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
            return origin if preflight else None
        same_origin = headers.get("sec-fetch-site") == "same-origin" or is_same_origin(
            origin, headers.get("host")
        )
        return None if same_origin else origin


class AnswerOptions:
    """ASGI middleware, inside CORS: answers `OPTIONS` with 204 and an `Allow` header
    listing the methods of the request's path, which `methods` names (None: a path it
    does not know, for the application to answer)."""

    def __init__(self, app: ASGIApp, methods: Callable[[Scope], Collection[str] | None]) -> None:
        self.app = app
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        options = scope["type"] == "http" and scope["method"] == "OPTIONS"
        methods = self.methods(scope) if options else None
        if methods is None:
            await self.app(scope, receive, send)
            return
        allow = ", ".join([*sorted(methods), "OPTIONS"])
        await Response(status_code=204, headers={"allow": allow})(scope, receive, send)


ROUTABLE_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def route_methods(router: Router) -> Callable[[Scope], Collection[str] | None]:
    """The methods the routes of `router` serve at an `OPTIONS` request's path, found by
    asking each route whether it would take the request with another method. None when
    no route has the path, or one takes `OPTIONS` itself (a mount: it answers for
    itself)."""

    def methods(scope: Scope) -> Collection[str] | None:
        found: set[str] = set()
        for route in router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return None
            if match is Match.PARTIAL:
                found.update(
                    method
                    for method in ROUTABLE_METHODS
                    if route.matches({**scope, "method": method})[0] is Match.FULL
                )
        return found or None

    return methods
