"""Keyset pagination, newest first, on a (time, id) pair: the cursor a page hands out
and the SQL that continues after it. Used by the activities list and the webhook
delivery log."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from server.clock import parse_instant
from server.errors import BadRequest
from server.wire import iso

Cursor = tuple[datetime, str]


def encode_cursor(at: datetime, item_id: str) -> str:
    return base64.urlsafe_b64encode(f"{iso(at)}|{item_id}".encode()).decode()


def decode_cursor(raw: str | None) -> Cursor | None:
    """The (time, id) a cursor stands for; raises ``BadRequest`` for one we never gave."""
    if not raw:
        return None
    try:
        at, _, item_id = base64.urlsafe_b64decode(raw.encode()).decode().partition("|")
        return parse_instant(at), item_id
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this server gave out", code="bad_cursor") from None


def after(cursor: Cursor, at: Any, item_id: Any) -> ColumnElement[bool]:
    """Rows that come after ``cursor`` in newest-first order of (``at`` desc, ``item_id``)."""
    when, last_id = cursor
    return or_(at < when, and_(at == when, item_id > last_id))


def newest_first(at: Any, item_id: Any) -> tuple[Any, Any]:
    return at.desc(), item_id
