"""A person's notification preferences, and the one rule that reads them (pure: no I/O).

What may *interrupt* a person: the desktop bridge's notifications (``desktop``) and Web
Push (``push``). The panel itself always updates (its list and badge are not an
interruption, and the contract's counts must stay right everywhere), so it has no switch.

``may_interrupt(prefs, channel, task, now)`` decides, in this order:

1. the channel is switched off → silent;
2. the task's process (by definition name) is muted → silent, whatever its priority (a
   mute is the person's explicit "not this one");
3. ``now`` falls in the quiet hours, read on the wall clock of the person's time zone →
   silent unless the task's priority is ``urgent``;
4. otherwise it may interrupt.

Quiet hours are a half-open window ``[start, end)`` of wall-clock minutes; ``start >
end`` wraps past midnight (22:00-07:00 is quiet from 22:00 until 06:59). ``start ==
end`` is refused (422 ``bad_time``): "never" and "always" are both better said with the
channel switches. Daylight saving: the wall clock decides, so on the night the clocks
jump forward an edge inside the skipped hour takes effect at the jump, and in the hour
repeated when they go back each pass is judged by what the clock shows.

The desktop bridge keeps its own copy of this rule (``bridge/quiet.py``: it does not
import the server); ``tests/test_preferences_core.py`` checks both agree.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from server.fields import Text
from server.wire import Priority, TaskJSON

MAX_MUTED = 100
"""Muted process names one person may keep."""

ZONE_MAX = 64
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class Channel(StrEnum):
    DESKTOP = "desktop"
    PUSH = "push"


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _clock_time(value: str) -> str:
    if not _HHMM.match(value):
        raise PydanticCustomError("bad_time", "a time of day is HH:MM, 00:00 to 23:59")
    return value


def _time_zone(value: str) -> str:
    # Only names of the IANA database as installed: no paths, no "localtime" tricks.
    if len(value) > ZONE_MAX or value not in _zones():
        raise PydanticCustomError("bad_time_zone", "not an IANA time zone name (Europe/Berlin)")
    return value


def _unique(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise PydanticCustomError("duplicate_process", "a process is named twice")
    return names


ClockTime = Annotated[str, AfterValidator(_clock_time)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
MutedProcesses = Annotated[list[Text], Field(max_length=MAX_MUTED), AfterValidator(_unique)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channels(_Strict):
    """Which channels may interrupt; both on unless switched off."""

    desktop: StrictBool = True  # strict: "yes" or 1 is a 422, not a guess
    push: StrictBool = True


class QuietHours(_Strict):
    """``start`` and ``end`` are wall-clock ``HH:MM`` in ``tz`` (an IANA name)."""

    start: ClockTime
    end: ClockTime
    tz: TimeZone

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise PydanticCustomError(
                "bad_time", "start and end must differ (switch a channel off to be left alone)"
            )
        return self


class Preferences(_Strict):
    """Body of ``PUT /me/preferences`` and what ``GET`` answers. A PUT replaces the
    whole value: a field left out takes its default."""

    channels: Channels = Channels()
    muted_processes: MutedProcesses = []
    quiet_hours: QuietHours | None = None


DEFAULT = Preferences()


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_window(start: str, end: str, minute: int) -> bool:
    """Whether ``minute`` (of the day, 0-1439) is in ``[start, end)``, wrapping past
    midnight when ``start > end``."""
    a, b = _minutes(start), _minutes(end)
    if a < b:
        return a <= minute < b
    return minute >= a or minute < b


def is_quiet(quiet: QuietHours | None, now: datetime) -> bool:
    """Whether the aware instant ``now`` falls in the quiet hours on the zone's clock."""
    if quiet is None:
        return False
    local = now.astimezone(zoneinfo.ZoneInfo(quiet.tz))
    return in_window(quiet.start, quiet.end, local.hour * 60 + local.minute)


class Silence(StrEnum):
    """Why a notification was not sent (the label of the suppressed-notifications metric)."""

    CHANNEL_OFF = "channel_off"
    MUTED = "muted"
    QUIET_HOURS = "quiet_hours"


def silence(prefs: Preferences, channel: Channel, task: TaskJSON, now: datetime) -> Silence | None:
    """Why ``channel`` must not notify the person of ``task`` at the aware instant
    ``now``, or None when it may (the module docstring has the order of the rules)."""
    if not (prefs.channels.desktop if channel is Channel.DESKTOP else prefs.channels.push):
        return Silence.CHANNEL_OFF
    process = task.get("process")
    if process is not None and process["name"] in prefs.muted_processes:
        return Silence.MUTED
    if task.get("priority") != Priority.URGENT.value and is_quiet(prefs.quiet_hours, now):
        return Silence.QUIET_HOURS
    return None


def may_interrupt(prefs: Preferences, channel: Channel, task: TaskJSON, now: datetime) -> bool:
    """Whether ``channel`` may notify the person of ``task`` at the aware instant ``now``."""
    return silence(prefs, channel, task, now) is None
