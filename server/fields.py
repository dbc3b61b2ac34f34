"""The field types request bodies are made of, and the edge's rules for them
(docs/protocol.md, "Input rules"): names hold no control characters, no text holds NUL,
titles are not blank, urls are http(s) or a same-origin path, and times are ``Instant``:
a zone required, converted to UTC once, on arrival."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from server.clock import parse_instant
from server.errors import BadRequest

# ---------------------------------------------------------------- numbers in text


def whole_number(raw: str | bytes, most: int) -> int | None:
    """``raw`` (a query value or a header) as a whole number from 0 to ``most``, else
    None. ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses; and
    no more digits than ``most`` has: ``int`` of thousands of digits raises (and takes
    its time) before any range test could."""
    if not raw or len(raw) > len(str(most)) or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value <= most else None


# ---------------------------------------------------------------- text at the edge
#
# Names (ids, owners, record keys, process names) may not hold any control character
# (Unicode category Cc); free text (titles, urls, record titles) may not hold NUL, which
# PostgreSQL cannot store and which no person means to send.


# Unicode's category Cc ("control") is exactly these 65 code points, and stays so (the
# standard's stability policy); one regex search in C instead of a category per character
# (tests/test_edges_text.py checks the set against ``unicodedata``).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _no_control(value: str) -> str:
    if CONTROL.search(value) is not None:
        raise PydanticCustomError("control_character", "must not contain control characters")
    return value


def no_nul(value: str) -> str:
    """No NUL character (PostgreSQL cannot store one, and no person means to send one)."""
    return _no_nul(value)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_text", "must not be empty or only whitespace")
    return value


def _web_url(value: str) -> str:
    """An absolute ``http(s)`` URL, or a path on this origin starting with one ``/``."""
    if CONTROL.search(value) is not None:
        raise PydanticCustomError("control_character", "must not contain control characters")
    if value.startswith("/"):
        if value.startswith(("//", "/\\")):
            raise PydanticCustomError("bad_url", "a path must start with a single '/'")
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        raise PydanticCustomError("bad_url", "not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError(
            "bad_url", "must be an absolute http(s) URL or a path starting with '/'"
        )
    return value


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s/]+$"),
    AfterValidator(_no_control),
]
Owner = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$"),
    AfterValidator(_no_control),
]
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1000),
    AfterValidator(_no_nul),
    AfterValidator(_not_blank),
]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_web_url)]
Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(_no_control),
    AfterValidator(_not_blank),
]


Entity = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[^\s/]+$"),
    AfterValidator(_no_control),
]
RecordTitle = Annotated[str, StringConstraints(max_length=500), AfterValidator(_no_nul)]


def is_name(value: str) -> bool:
    """Whether ``value`` could name something (a process definition in a path): 1 to 200
    characters, not blank, no control characters."""
    return 1 <= len(value) <= 200 and bool(value.strip()) and CONTROL.search(value) is None


# ---------------------------------------------------------------- time at the edge


def _instant_input(value: object) -> object:
    """Only ISO-8601 text (or, from Python, a datetime) is a time: numbers, and
    strings of digits that pydantic would read as Unix timestamps, are refused."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_instant(value.strip())
        except ValueError:
            raise PydanticCustomError(
                "bad_time", "must be an ISO-8601 time with a zone, e.g. 2030-01-01T10:00:00Z"
            ) from None
    raise PydanticCustomError(
        "bad_time", "must be an ISO-8601 time with a zone (numeric timestamps are not accepted)"
    )


def _to_utc(value: datetime) -> datetime:
    """Aware, converted to UTC once, here: nothing behind the edge sees another zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            "bad_time", "needs a time zone (e.g. Z or +02:00); naive times are ambiguous"
        )
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PydanticCustomError("bad_time", "is out of range") from None


Instant = Annotated[datetime, BeforeValidator(_instant_input), AfterValidator(_to_utc)]
"""A point in time from outside: ISO-8601 with a zone, held as an aware UTC datetime."""

_instant: TypeAdapter[datetime] = TypeAdapter(Instant)


def query_instant(raw: str, name: str) -> datetime:
    """A time given in a query string (``?from=``), by the same rules as in a body: with
    a zone, converted to UTC. Raises ``BadRequest`` (``bad_query``) otherwise."""
    try:
        return _instant.validate_python(raw)
    except ValidationError as exc:
        why = exc.errors(include_url=False, include_input=False)[0]["msg"]
        raise BadRequest(f"'{name}' {why}", code="bad_query") from None
