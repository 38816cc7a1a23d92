"""Opaque listing cursors: the (created_at, id) of a row, base64-encoded.

A cursor is only ever text this module wrote. `decode` accepts exactly that text and
refuses anything else with BAD_USER_INPUT: base64 of something else, text that is not
UTF-8 once decoded, another shape, a UUID spelled another way, and dates with an offset
other than UTC. The last matters most: a date such as `0001-01-01T00:00:00+14:00` is a
valid ISO date that cannot be turned into UTC (the year would be 0), so the driver
failed on it while sending the query, and the client got INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

from api.errors import BadUserInputError
from db.insight import Position

MAX_CURSOR_LENGTH = 100
"""Our cursors are 84 or 92 characters long (without or with microseconds); a longer
string is refused before it is decoded."""

NOT_OURS = "not a cursor from this listing"


class Listed(Protocol):
    """A row of a newest-first listing: an analysis, a game."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> uuid.UUID: ...


def encode(row: Listed) -> str:
    """The cursor just after `row`."""
    return _encode(Position(created_at=row.created_at, id=row.id))


def _encode(position: Position) -> str:
    raw = f"{position.created_at.astimezone(UTC).isoformat()}|{position.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode(cursor: str, field: str = "after") -> Position:
    """The position `cursor` points at, or BadUserInputError naming `field`."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise BadUserInputError(field, NOT_OURS)
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
        created_at, separator, row_id = raw.partition("|")
        position = Position(created_at=datetime.fromisoformat(created_at), id=uuid.UUID(row_id))
    except (ValueError, UnicodeError) as exc:  # binascii.Error is a ValueError
        raise BadUserInputError(field, NOT_OURS) from exc
    # Only the exact text `encode` writes: UTC, our spelling of the date and the UUID.
    # (base64 decoding skips characters outside its alphabet, and fromisoformat and
    # UUID read several spellings, so decoding alone would take foreign text.)
    if (
        not separator
        or position.created_at.utcoffset() != timedelta(0)
        or _encode(position) != cursor
    ):
        raise BadUserInputError(field, NOT_OURS)
    return position
