"""The activities list: a person's tasks of every status, searched, filtered and sorted
(``GET /me/tasks`` with ``q`` and ``sort``), and the per-status totals behind its
filters (``GET /me/counts``).

The query is parsed into an ``ActivityQuery`` (pure); ``conditions`` and ``order`` turn
it into SQL that runs the same on SQLite and PostgreSQL. ``newest`` pages by keyset on
(updated_at, id) as before (``server.paging``); ``due`` and ``priority`` order by
expressions that a keyset cursor cannot carry cheaply, so their cursor is an offset
tagged with its sort (a cursor of another sort is refused): a person's own history is
small enough for that.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, case, or_

from server import paging
from server.errors import BadRequest
from server.models import task_t

MAX_Q = 200  # characters of a search


class Sort(StrEnum):
    NEWEST = "newest"  # last changed first
    DUE = "due"  # soonest due first, tasks without a due time last
    PRIORITY = "priority"  # urgent, high, normal, low; then soonest due; then newest


_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


@dataclass(frozen=True, slots=True)
class Page:
    """Where a page starts: after a (time, id) keyset position, or at an offset."""

    after: paging.Cursor | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    q: str | None = None
    sort: Sort = Sort.NEWEST


def parse_q(raw: str | None) -> str | None:
    """The search text, or None; raises ``BadRequest`` (``bad_query``) when too long or
    holding control characters."""
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > MAX_Q:
        raise BadRequest(f"q must be at most {MAX_Q} characters", code="bad_query")
    if any(ord(c) < 32 for c in raw):
        raise BadRequest("q must not contain control characters", code="bad_query")
    return raw.strip()


def parse_sort(raw: str | None) -> Sort:
    if raw is None or raw == "":
        return Sort.NEWEST
    try:
        return Sort(raw)
    except ValueError:
        names = ", ".join(s.value for s in Sort)
        raise BadRequest(f"sort must be one of {names}", code="bad_query") from None


def encode_page(sort: Sort, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{sort.value}@{offset}".encode()).decode()


def decode_page(sort: Sort, raw: str | None) -> Page:
    """The page a cursor stands for under ``sort``; raises ``BadRequest``
    (``bad_cursor``) for one this server never gave for that sort."""
    if not raw:
        return Page()
    if sort is Sort.NEWEST:
        return Page(after=paging.decode_cursor(raw))
    try:
        tag, _, offset = base64.urlsafe_b64decode(raw.encode()).decode().partition("@")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        tag, offset = "", ""
    if tag != sort.value or not offset.isdigit() or len(offset) > 9:
        raise BadRequest("cursor is not one this server gave out", code="bad_cursor")
    return Page(offset=int(offset))


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def conditions(query: ActivityQuery) -> list[ColumnElement[bool]]:
    """Search: the text anywhere in the title, the process's name or the record's title,
    id or entity, case-insensitive (ASCII case on SQLite)."""
    if query.q is None:
        return []
    pattern = _like(query.q)
    columns = [
        task_t.c.title,
        task_t.c.process_name,
        task_t.c.record_title,
        task_t.c.record_id,
        task_t.c.record_entity,
    ]
    return [or_(*(c.ilike(pattern, escape="\\") for c in columns))]


def order(sort: Sort) -> list[Any]:
    newest = list(paging.newest_first(task_t.c.updated_at, task_t.c.id))
    no_due_last = case((task_t.c.due_at.is_(None), 1), else_=0)
    if sort is Sort.DUE:
        return [no_due_last, task_t.c.due_at, *newest]
    if sort is Sort.PRIORITY:
        rank = case(*((task_t.c.priority == p, r) for p, r in _RANK.items()), else_=2)
        return [rank, no_due_last, task_t.c.due_at, *newest]
    return newest
