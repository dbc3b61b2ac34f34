"""The clock, and the one place timestamps are made UTC-aware or parsed.

SQLite hands timestamps back naive (they were stored as UTC); PostgreSQL hands them
back aware. Everything that reads a stored time goes through ``as_utc``; everything
that reads an ISO-8601 text from outside goes through ``parse_instant``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """Attach UTC to a naive stored timestamp; an aware one is returned as it is."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def parse_instant(text: str) -> datetime:
    """An ISO-8601 text (a trailing ``Z`` allowed) as a datetime, aware or naive as
    written. Raises ``ValueError`` when it is not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
