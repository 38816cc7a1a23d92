"""Driver errors classified: what may succeed if tried again, and what is a bug."""

from __future__ import annotations

import asyncpg
import pytest

from db import errors

E = asyncpg.exceptions


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        E.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        E.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        E.InternalClientError("not connected"),
        E.AdminShutdownError("terminating connection due to administrator command"),
        E.CannotConnectNowError("the database system is starting up"),
        E.TooManyConnectionsError("sorry, too many clients already"),
        E.ConnectionFailureError("connection failure"),
    ],
)
def test_the_server_out_of_reach_is_unavailable(exc: Exception) -> None:
    assert errors.is_unavailable(exc)
    assert isinstance(errors.translate(exc), errors.DatabaseUnavailableError)


@pytest.mark.parametrize(
    "exc",
    [
        E.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only transaction"),
        E.QueryCanceledError("canceling statement due to statement timeout"),
        E.DeadlockDetectedError("deadlock detected"),
        E.SerializationError("could not serialize access"),
        E.LockNotAvailableError("canceling statement due to lock timeout"),
        E.IdleSessionTimeoutError("terminating connection due to idle-session timeout"),
        E.IdleInTransactionSessionTimeoutError("idle-in-transaction timeout"),
    ],
)
def test_errors_of_the_moment_are_transient_not_unavailable(exc: Exception) -> None:
    assert errors.is_transient(exc)
    assert not errors.is_unavailable(exc)
    translated = errors.translate(exc)
    assert isinstance(translated, errors.TransientDatabaseError)
    assert not isinstance(translated, errors.DatabaseUnavailableError)


@pytest.mark.parametrize(
    "exc",
    [
        E.UndefinedTableError('relation "analyses" does not exist'),
        E.RaiseError("injected fault"),
        E.InterfaceError("the server expects 12 arguments for this query, 3 were passed"),
        ValueError("a bug"),
    ],
)
def test_anything_else_is_a_bug_and_goes_up_unchanged(exc: Exception) -> None:
    assert not errors.is_transient(exc)
    assert errors.translate(exc) is exc


async def test_a_statement_on_a_connection_terminated_under_it_is_unavailable(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection, pool.acquire() as admin:
        await admin.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
        with pytest.raises(errors.DatabaseUnavailableError):
            await errors.fetchrow(connection, "SELECT 1")
