"""Whether the bridge may raise a desktop notification now: the person's preferences
(``GET /api/v1/me/preferences``, docs/protocol.md "Notification preferences") read with
the server's rule (pure: no sockets).

The bridge does not import the server, so this is its own copy of
``server.preferences.may_interrupt`` for the ``desktop`` channel;
``tests/test_preferences_core.py`` checks that both answer alike. In order: the desktop
channel switched off, or the task's process muted → silent; in the quiet hours (a
``[start, end)`` window of wall-clock minutes in the person's zone, wrapping past
midnight when ``start > end``) → silent unless the task is ``urgent``.

What the server sends has been validated there; anything this copy cannot read (an older
server, a broken answer) counts as the defaults: notify, as the bridge always did.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.state import Task

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


@dataclass(frozen=True, slots=True)
class Quiet:
    start: int  # minute of the day
    end: int
    zone: zoneinfo.ZoneInfo


@dataclass(frozen=True, slots=True)
class DesktopPrefs:
    desktop: bool = True
    muted: frozenset[str] = frozenset()
    quiet: Quiet | None = None


def _minute(value: Any) -> int | None:
    if not isinstance(value, str) or not _HHMM.match(value):
        return None
    return int(value[:2]) * 60 + int(value[3:])


def read(body: Any) -> DesktopPrefs:
    """The part of a preferences answer the bridge needs; the defaults for what it
    cannot read."""
    if not isinstance(body, dict):
        return DesktopPrefs()
    channels = body.get("channels")
    muted = body.get("muted_processes")
    raw = body.get("quiet_hours")
    if not isinstance(channels, dict) or not isinstance(muted, list):
        return DesktopPrefs()
    quiet = None
    if raw is not None:
        if not isinstance(raw, dict):
            return DesktopPrefs()
        start, end, tz = _minute(raw.get("start")), _minute(raw.get("end")), raw.get("tz")
        if start is None or end is None or start == end or not isinstance(tz, str):
            return DesktopPrefs()
        try:
            quiet = Quiet(start, end, zoneinfo.ZoneInfo(tz))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return DesktopPrefs()
    return DesktopPrefs(
        desktop=channels.get("desktop") is not False,
        muted=frozenset(m for m in muted if isinstance(m, str)),
        quiet=quiet,
    )


def is_quiet(quiet: Quiet | None, now: datetime) -> bool:
    if quiet is None:
        return False
    local = now.astimezone(quiet.zone)
    minute = local.hour * 60 + local.minute
    if quiet.start < quiet.end:
        return quiet.start <= minute < quiet.end
    return minute >= quiet.start or minute < quiet.end


def may_notify(prefs: DesktopPrefs, task: Task, now: datetime) -> bool:
    """Whether a desktop notification of ``task`` may be raised at the aware ``now``."""
    if not prefs.desktop:
        return False
    process = task.get("process")
    if process and process.get("name") in prefs.muted:
        return False
    if task.get("priority") == "urgent":
        return True
    return not is_quiet(prefs.quiet, now)
