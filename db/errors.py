"""The errors `db` raises; the only module that knows the driver's exceptions.

    DatabaseError
    └── DatabaseUnavailableError   the server cannot be reached (down, restarting, refused)

Callers above `db` catch these, never asyncpg's or SQLAlchemy's own.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import asyncpg
import sqlalchemy.exc

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseError(Exception):
    """Base of every error raised by `db`."""


class DatabaseUnavailableError(DatabaseError):
    """PostgreSQL cannot be reached right now; the same call may succeed later."""


UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
)


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` (a driver or SQLAlchemy error) means the server cannot be reached."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and is_unavailable(exc.orig.__cause__ or exc.orig)
    if isinstance(exc, sqlalchemy.exc.InterfaceError | sqlalchemy.exc.TimeoutError):
        return True
    return isinstance(exc, UNAVAILABLE)


def translated(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Raise `DatabaseUnavailableError` from `function` where the driver lost the server."""

    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await function(*args, **kwargs)
        except DatabaseError:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailableError(f"database unavailable: {exc}") from exc
            raise

    return wrapper
