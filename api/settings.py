"""API settings, read from the environment by `chess-analysis-api`."""

from __future__ import annotations

import json
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from strawberry.http.websocket_origin import normalize_origin

HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
"""An HTTP header's name (RFC 9110 token)."""

CORS_ORIGINS_VARIABLE = "API_CORS_ORIGINS"
"""The environment variable of `ApiSettings.cors_origins`, named in refusals."""


class ApiSettings(BaseSettings):
    """Where the API listens and which requests it accepts."""

    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 to serve other machines."""
    port: int = Field(
        default=8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "API_PORT")
    )
    """TCP port."""
    max_moves_to_return: int = Field(default=10, ge=1, le=500)
    """Upper bound of `numMovesToReturn` (lines per result)."""
    max_time_limit: float = Field(default=60.0, gt=0, le=3600)
    """Upper bound of `timeLimit`, in seconds."""
    max_depth_limit: int = Field(default=60, ge=1, le=245)
    """Upper bound of `depthLimit`, in plies."""
    max_nodes_limit: int = Field(default=1_000_000_000, ge=1, le=10**15)
    """Upper bound of `nodesLimit`."""
    max_game_plies: int = Field(default=600, ge=1, le=5000)
    """Most plies (moves of either side) a game submitted for review may have."""
    progress_watch_seconds: float = Field(default=30.0, ge=2, le=3600)
    """How long a search stays watched (its worker publishing its progress) after its
    last listener left: listeners' marks are renewed every third of it."""
    listen_ping_interval: float = Field(default=5.0, gt=0, le=300)
    """Seconds between checks that the LISTEN connection is alive."""
    graphiql: bool = True
    """Serve the GraphiQL IDE on GET /graphql."""
    max_queued: int = Field(default=10_000, ge=1, le=10_000_000)
    """Queued analyses beyond which `submitAnalysis` answers QUEUE_FULL."""
    queue_full_retry_after: float = Field(default=5.0, gt=0, le=3600)
    """Seconds a client refused with QUEUE_FULL is told to wait (`extensions.retryAfter`)."""
    max_attempts: int = Field(default=3, ge=1, le=100)
    """Claims an analysis gets before a crashing engine or worker makes it FAILED."""
    cancel_wait: float = Field(default=2.0, ge=0, le=30)
    """Seconds `cancelAnalysis` waits for a running analysis to stop before it answers."""
    ws_connection_init_timeout: float = Field(default=5.0, gt=0, le=300)
    """Seconds a WebSocket client has to send `connection_init` before it is closed."""
    ws_keep_alive_interval: float = Field(default=15.0, gt=0, le=300)
    """Seconds between server keep-alive messages on idle WebSockets."""
    ws_max_subscriptions: int = Field(default=100, ge=1, le=10_000)
    """Subscriptions one WebSocket connection may hold at once."""
    ws_compression: bool = False
    """Offer permessage-deflate on WebSockets. Off: the messages are small JSON, and
    each compressed connection holds zlib state (about 100 KB) for as long as it lives."""
    ws_max_message_bytes: int | None = Field(default=None, ge=1_000, le=100_000_000)
    """Largest WebSocket message; a larger one closes the connection (1009, message too
    big). Unset: `max_body_bytes`, so a document is bounded alike on every transport."""
    ws_idle_timeout: float = Field(default=60.0, ge=0, le=86_400)
    """Seconds an initialised WebSocket may hold no operation before it is closed (1000),
    checked at each keep-alive; one with a subscription is never closed for this. 0: never."""

    @property
    def ws_message_limit(self) -> int:
        """The largest WebSocket message accepted, in bytes."""
        if self.ws_max_message_bytes is None:
            return self.max_body_bytes
        return self.ws_max_message_bytes

    max_query_depth: int = Field(default=8, ge=1, le=100)
    """Deepest selection nesting a document may have."""
    max_tokens: int = Field(default=2_000, ge=10, le=1_000_000)
    """Lexical tokens a document may have (refused before it is parsed in full)."""
    max_aliases: int = Field(default=20, ge=0, le=10_000)
    """Field aliases a document may use (aliases multiply work)."""
    max_body_bytes: int = Field(default=100_000, ge=1_000, le=100_000_000)
    """Largest HTTP request body; larger ones are refused with 413 before they are read."""
    max_connections: int = Field(default=10_000, ge=10, le=1_000_000)
    """Requests in progress and WebSockets open at once in one process; past it an HTTP
    request is refused with 503 SERVICE_UNAVAILABLE (and `Retry-After`), a WebSocket is
    closed with 1013 (try again later). Idle keep-alive connections are bounded by
    uvicorn at twice this."""
    keep_alive_seconds: int = Field(default=75, ge=1, le=3600)
    """Seconds an idle HTTP keep-alive connection stays open. Longer than the idle
    timeout of the load balancers in front (AWS ALB and nginx: 60 s), so that the
    balancer, not this server, closes an idle connection: a server that closes first
    can race a request the balancer is sending on it, which then fails unanswered."""
    introspection: bool = True
    """Answer introspection queries (GraphiQL and codegen need them)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins whose pages may call the API and open WebSockets from a browser, as a JSON
    list (`API_CORS_ORIGINS='["http://localhost:5173"]'`); `["*"]` for any. Pages the API
    serves itself (GraphiQL) need no entry. Each is kept as browsers send it in `Origin`
    (lower case, no default port, no trailing slash)."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, list):
            example = json.dumps(["http://localhost:5173"])
            raise ValueError(  # pydantic reports a ValueError as invalid input, not a TypeError
                f"{CORS_ORIGINS_VARIABLE} must be a JSON list of origins, such as '{example}'"
            )
        return [parse_origin(item) if isinstance(item, str) else item for item in value]

    anonymous: bool = False
    """Serve requests without a key as the shared anonymous tenant, with the quotas
    below; off, they are refused with UNAUTHENTICATED. (`make run` turns it on.)"""
    anonymous_max_queued: int = Field(default=10, ge=1, le=10_000_000)
    """Analyses the anonymous tenant may have queued at once (QUOTA_EXCEEDED past it)."""
    anonymous_engine_seconds_per_hour: float = Field(default=600.0, gt=0, le=10_000_000)
    """Engine seconds per hour the anonymous tenant may be charged (RATE_LIMITED past it)."""
    anonymous_per_address_per_minute: int = Field(default=30, ge=1, le=1_000_000)
    """Submissions one client address may make without a key in any 60 s (RATE_LIMITED
    past it), counted by each API process on its own."""
    forwarded_for_header: str | None = None
    """The header a trusted proxy in front writes the client's address into, such as
    `X-Forwarded-For` (its last entry is taken: the one that proxy appended). Unset: the
    address of the peer. Set it only behind such a proxy: a client could write the
    header itself."""
    key_cache_seconds: float = Field(default=2.0, gt=0, le=3600)
    """Seconds a looked-up key is trusted before it is looked up again; a revoked key
    stops working within about this long, on an open WebSocket too."""

    @field_validator("forwarded_for_header", mode="before")
    @classmethod
    def parse_header_name(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if not HEADER_NAME.fullmatch(value):
                raise ValueError(f"{value!r} is not a header name, such as X-Forwarded-For")
            return value.lower()
        return value

    document_cache_size: int = Field(default=256, ge=0, le=100_000)
    """Parsed and validated documents kept per process (each cache is bounded)."""
    max_page_size: int = Field(default=100, ge=1, le=10_000)
    """Largest `first` a listing accepts."""
    persisted_queries_size: int = Field(default=1_000, ge=0, le=1_000_000)
    """Persisted documents kept per process (LRU); 0 turns persisted queries off."""
    persisted_queries_shared: bool = False
    """Also keep persisted documents in PostgreSQL, shared by every API process."""
    persisted_queries_max_bytes: int = Field(default=10_000_000, ge=1_000, le=10_000_000_000)
    """UTF-8 bytes of persisted documents kept per process: the least recently used go
    first past this, as past `persisted_queries_size` entries; a larger one is not kept."""
    persisted_query_days: float = Field(
        default=30,
        ge=0,
        le=36500,
        validation_alias=AliasChoices("PERSISTED_QUERY_DAYS", "API_PERSISTED_QUERY_DAYS"),
    )
    """A document kept in PostgreSQL longer ago than this is unknown to the API, even
    before the workers' sweep (which reads the same `PERSISTED_QUERY_DAYS`) deletes it;
    0: never expires."""


def parse_origin(text: str) -> str:
    """`text` as browsers send it in an `Origin` header; `*` as itself."""
    if text == "*":
        return text
    normalized = normalize_origin(text)  # None when it has no scheme and host
    if normalized is None or urlsplit(text.strip()).path not in ("", "/") or "?" in text:
        raise ValueError(
            f"{text!r} is not an origin: scheme, host and port only, as in http://localhost:5173"
        )
    return normalized
