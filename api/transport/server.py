"""How uvicorn serves the application: one place for `python -m api` and the tests."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

from api.settings import ApiSettings

GRACEFUL_SHUTDOWN_SECONDS = 5

REFUSAL_BODY = (
    b'{"errors":[{"message":"the WebSocket handshake\'s headers are not ASCII",'
    b'"extensions":{"code":"BAD_REQUEST"}}]}'
)
HANDSHAKE_REFUSED = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(REFUSAL_BODY), REFUSAL_BODY)
)


class WebSocketProtocol(WSProtocol):
    """uvicorn's wsproto protocol, which holds about 3 KB less per open connection than
    its websockets one (that counts at thousands of waiting subscribers), with one
    mend: wsproto reads a handshake's list headers (`Sec-WebSocket-Protocol`, ...) as
    ASCII and raises on other bytes, out of uvicorn's reach, which then neither answers
    nor lets go of the connection. Such a handshake is refused with 400 and closed."""

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except UnicodeDecodeError:
            self.transport.write(HANDSHAKE_REFUSED)
            self.transport.close()


def config(app: ASGIApp, settings: ApiSettings, *, port: int | None = None) -> uvicorn.Config:
    """uvicorn's configuration for `app` (on `port` if given, else the settings' port)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ws=WebSocketProtocol,
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
