"""The errors `db` raises; the only module that knows the driver's exceptions.

    DatabaseError
    └── TransientDatabaseError      the same call may succeed later: a failover, a
        │                           canceled query, a deadlock, a session timed out
        └── DatabaseUnavailableError  the server cannot be reached (down, restarting, refused)

Callers above `db` catch these, never asyncpg's or SQLAlchemy's own. Anything else a
statement raises is a bug (a wrong statement, a schema that does not match) and goes up
as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import asyncpg
import sqlalchemy.exc

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseError(Exception):
    """Base of every error raised by `db`."""


class TransientDatabaseError(DatabaseError):
    """The statement failed for a reason of the moment; the same call may succeed later."""


class DatabaseUnavailableError(TransientDatabaseError):
    """PostgreSQL cannot be reached right now."""


UNREACHABLE = (
    OSError,  # connection refused or reset, no route, the socket is gone
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)
CLOSED = ("closed", "pool is closing", "not connected")
"""How asyncpg's InterfaceError (and its InternalClientError) says the connection is gone:
"connection is closed", "connection was closed in the middle of operation", "not
connected". Its other InterfaceErrors, such as a wrong number of arguments, are bugs."""

UNREACHABLE_STATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is stopping
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up or shutting down
        "53300",  # too_many_connections
    }
)
"""SQLSTATEs that mean the server cannot serve this connection now."""

TRANSIENT_STATES = frozenset(
    {
        "25006",  # read_only_sql_transaction: a standby, or a primary during failover
        "57014",  # query_canceled: statement_timeout, pg_cancel_backend
        "40P01",  # deadlock_detected
        "40001",  # serialization_failure
        "55P03",  # lock_not_available: lock_timeout
        "57P05",  # idle_session_timeout
        "25P03",  # idle_in_transaction_session_timeout
    }
)
"""SQLSTATEs after which the same statement may well succeed if tried again."""


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception inside a SQLAlchemy one (or `exc` itself)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        return exc.orig.__cause__ or exc.orig
    return exc


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` (a driver or SQLAlchemy error) means the server cannot be reached."""
    if isinstance(exc, DatabaseUnavailableError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlalchemy.exc.InterfaceError | sqlalchemy.exc.TimeoutError):
        return True
    cause = _driver_error(exc)
    if isinstance(cause, UNREACHABLE):
        return True
    if isinstance(
        cause, asyncpg.exceptions.InterfaceError | asyncpg.exceptions.InternalClientError
    ):
        return any(words in str(cause) for words in CLOSED)
    state = getattr(cause, "sqlstate", None)
    return state in UNREACHABLE_STATES or (isinstance(state, str) and state.startswith("08"))


def is_transient(exc: BaseException) -> bool:
    """True when the call that raised `exc` may succeed if made again later."""
    if isinstance(exc, TransientDatabaseError) or is_unavailable(exc):
        return True
    return getattr(_driver_error(exc), "sqlstate", None) in TRANSIENT_STATES


def translate(exc: Exception) -> Exception:
    """The `db` error for a driver or SQLAlchemy error; `exc` itself when it is a bug."""
    if isinstance(exc, DatabaseError):
        return exc
    # The driver's own words, without the statement SQLAlchemy adds to them.
    cause = _driver_error(exc)
    said = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    if is_unavailable(exc):
        return DatabaseUnavailableError(f"database unavailable: {said}")
    if is_transient(exc):
        return TransientDatabaseError(f"database: {said}")
    return exc


async def fetchrow(connection: Any, query: str, *args: object) -> Any:
    """`connection.fetchrow`, where any error after which the connection is closed means
    the server was lost, whatever the driver called it: the rule SQLAlchemy applies to
    its own connections (a backend terminated under an idle pooled connection surfaces
    in more than one way)."""
    try:
        return await connection.fetchrow(query, *args)
    except Exception as exc:
        if _closed(connection) and not isinstance(exc, DatabaseError):
            raise DatabaseUnavailableError(f"database unavailable: {exc}") from exc
        raise


def _closed(connection: Any) -> bool:
    """Whether `connection` is gone; a pooled one that broke has been handed back to its
    pool already, and then refuses even the question."""
    try:
        return bool(connection.is_closed())
    except asyncpg.exceptions.InterfaceError:
        return True


def translated(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Raise `TransientDatabaseError` (or `DatabaseUnavailableError`) from `function`
    where the driver's error says the call may succeed later."""

    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await function(*args, **kwargs)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    return wrapper
