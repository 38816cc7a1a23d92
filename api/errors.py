"""Errors a client may see, and the shaping of every other error into a masked one.

    ClientError                     (extensions.code)
    ├── BadUserInputError           BAD_USER_INPUT       the request names a bad value
    ├── BadUserInputGroupError      BAD_USER_INPUT       several bad values: one error each
    ├── NotFoundError               NOT_FOUND            no analysis of yours has that id
    ├── UnauthenticatedError        UNAUTHENTICATED      no key where one is needed, or a
    │                                                    wrong or revoked one
    ├── ForbiddenError              FORBIDDEN            the key lacks the scope
    ├── RetryLaterError             (extensions.retryAfter: seconds to wait)
    │   ├── QueueFullError          QUEUE_FULL           too much work waits in all
    │   ├── QuotaExceededError      QUOTA_EXCEEDED       the tenant's queued-work quota is full
    │   └── RateLimitedError        RATE_LIMITED         the tenant's engine seconds per hour
    │                                                    are spent, or one address submits
    │                                                    too often without a key
    ├── BadRequestError             BAD_REQUEST          no operation that can run here
    └── ServiceUnavailableError     SERVICE_UNAVAILABLE  the database cannot be reached now

Over HTTP, UNAUTHENTICATED refuses the whole request (status 401) before any operation
runs, and over a WebSocket the connection (`api.transport.websockets`); inside GraphQL
it stands only for a context that was never identified.

A resolver that finds several bad values raises them together (`BadUserInputGroupError`);
the client sees each as an error of its own, with the resolver's path and locations.
Anything else raised by a resolver is logged with its traceback and reaches the client
as "Internal server error." with code INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext

from db.errors import TransientDatabaseError
from runtime import logs

log = logging.getLogger(__name__)


class ClientError(Exception):
    """An error whose message is meant for the client."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.extensions: dict[str, Any] = {"code": self.code}


class BadUserInputError(ClientError):
    """A value in the request is out of bounds or malformed; nothing was stored."""

    code = "BAD_USER_INPUT"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.extensions["field"] = field


class BadUserInputGroupError(ClientError):
    """Several values in the request are bad; nothing was stored. `ShapeErrors` answers
    each as an error of its own."""

    code = "BAD_USER_INPUT"

    def __init__(self, errors: Sequence[BadUserInputError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = tuple(errors)
        self.extensions["fields"] = [error.extensions["field"] for error in errors]


def refusal(errors: Sequence[BadUserInputError]) -> ClientError:
    """What to raise for the bad values `errors` (at least one): the error itself when
    there is one, all of them together when there are several."""
    if len(errors) == 1:
        return errors[0]
    return BadUserInputGroupError(errors)


class NotFoundError(ClientError):
    """No analysis has the given id."""

    code = "NOT_FOUND"


class UnauthenticatedError(ClientError):
    """No key came where one is needed, or the key is wrong or revoked."""

    code = "UNAUTHENTICATED"


class ForbiddenError(ClientError):
    """The key is good but lacks the scope the request needs (`admin`)."""

    code = "FORBIDDEN"


class RetryLaterError(ClientError):
    """A submission refused for now; nothing was stored. `extensions.retryAfter` says
    how many seconds to wait (rounded up to a tenth: never too early)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.extensions["retryAfter"] = max(0.1, math.ceil(retry_after * 10) / 10)


class QueueFullError(RetryLaterError):
    """The queue holds its maximum of waiting analyses, whoever submitted them."""

    code = "QUEUE_FULL"

    def __init__(self, queued: int, retry_after: float) -> None:
        super().__init__(f"the queue is full ({queued} analyses waiting); retry later", retry_after)


class QuotaExceededError(RetryLaterError):
    """The tenant has as many analyses queued as its quota allows."""

    code = "QUOTA_EXCEEDED"


class RateLimitedError(RetryLaterError):
    """The tenant has spent its engine seconds for now, or one client address submits
    more often without a key than anonymous use allows."""

    code = "RATE_LIMITED"


class BadRequestError(ClientError):
    """The request names no operation that can run (an unknown operation name, or one
    of a type the transport does not serve)."""

    code = "BAD_REQUEST"


class ServiceUnavailableError(ClientError):
    """The database cannot be reached right now; the client may retry."""

    code = "SERVICE_UNAVAILABLE"


def client_error(error: GraphQLError) -> ClientError | None:
    """The client-facing error behind `error`, if its cause may be shown."""
    cause = error.original_error
    if isinstance(cause, ClientError):
        return cause
    if isinstance(cause, TransientDatabaseError):
        return ServiceUnavailableError("the database is unavailable; retry shortly")
    if isinstance(cause, CannotGetOperationTypeError):
        return BadRequestError(cause.as_http_error_reason())
    if isinstance(cause, InvalidOperationTypeError):
        kind = cause.operation_type.value
        return BadRequestError(f"{kind}s are not served over this transport")
    if isinstance(cause, MissingQueryError):
        return BadRequestError("the request has no GraphQL document (its query is empty)")
    return None


def raised_by_resolver(error: GraphQLError) -> bool:
    """True for errors our code raised (not GraphQL's own parse, validation or coercion
    errors, which carry no cause or a GraphQLError one). Errors raised inside a
    subscription's generator have no path, so the path cannot tell."""
    cause = error.original_error
    return cause is not None and not isinstance(cause, GraphQLError)


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors raised by our code that the client must not see."""
    return raised_by_resolver(error) and client_error(error) is None


def log_unexpected(errors: list[GraphQLError], context: ExecutionContext | None) -> None:
    """Log the errors the client will only see masked; client errors are not logged."""
    operation = context.operation_name if context is not None else None
    for error in errors:
        if is_unexpected(error):
            log.error(
                "unexpected error in operation %s at %s",
                operation or "(anonymous)",
                error.path,
                exc_info=error.original_error,
            )


def graphql_code(error: GraphQLError) -> str:
    """The Apollo-style code of an error GraphQL itself raised."""
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith("Variable "):
        return "BAD_USER_INPUT"  # a variable's value does not fit its type
    if error.path is None:
        return "GRAPHQL_VALIDATION_FAILED"  # includes the depth, token and alias limits
    return "INTERNAL_SERVER_ERROR"


class ShapeErrors(MaskErrors):
    """Mask unexpected errors; give client errors their code; give GraphQL's own errors
    an Apollo-style code. Every error leaves with `extensions.code`."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=raised_by_resolver)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        shaped = super()._process_errors([part for error in errors for part in separated(error)])
        for error in shaped:
            if not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": graphql_code(error)}
        return shaped

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        shown = client_error(error)
        if shown is None:
            message = "Internal server error."
            extensions: dict[str, Any] = {"code": "INTERNAL_SERVER_ERROR"}
            request_id = logs.request_id.get()
            if request_id is not None:
                extensions["requestId"] = request_id
        else:
            message, extensions = str(shown), shown.extensions
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions=extensions,
        )


def separated(error: GraphQLError) -> list[GraphQLError]:
    """`error` as the client is to see it: one error for each bad value it carries, at
    the same path and locations, or `error` itself."""
    cause = error.original_error
    if not isinstance(cause, BadUserInputGroupError):
        return [error]
    return [
        GraphQLError(
            message=str(part),
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=part,
        )
        for part in cause.errors
    ]
