"""Opaque listing cursors: the (created_at, id) of a row, base64-encoded."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from api.errors import BadUserInputError
from db.insight import Position
from db.models import Analysis


def encode(row: Analysis) -> str:
    """The cursor just after `row`."""
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode(cursor: str, field: str = "after") -> Position:
    """The position `cursor` points at, or BadUserInputError."""
    try:
        created_at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        position = Position(created_at=datetime.fromisoformat(created_at), id=uuid.UUID(row_id))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadUserInputError(field, "not a cursor from this listing") from exc
    if position.created_at.tzinfo is None:
        raise BadUserInputError(field, "not a cursor from this listing")
    return position
