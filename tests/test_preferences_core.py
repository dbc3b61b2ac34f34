"""The preferences rule (``server.preferences``), pure: which channel may interrupt whom,
when. Quiet hours across midnight, the same instant in two zones, daylight-saving edges,
the urgent bypass, muted processes and switched-off channels; and the bridge's own copy
of the rule (``bridge.quiet``) answers the same for every case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge import quiet as bridge_quiet
from server.preferences import (
    DEFAULT,
    MAX_MUTED,
    Channel,
    Preferences,
    Silence,
    in_window,
    may_interrupt,
    silence,
)
from server.wire import TaskJSON

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def task(priority: str = "normal", process: str | None = "Invoice approval") -> TaskJSON:
    body: dict[str, Any] = {
        "id": "t-1",
        "priority": priority,
        "process": {"instance_id": "p-1", "name": process} if process else None,
    }
    return body  # type: ignore[return-value]


def prefs(**kw: Any) -> Preferences:
    return Preferences.model_validate(kw)


def nightly(tz: str = BERLIN, start: str = "22:00", end: str = "07:00") -> Preferences:
    return prefs(quiet_hours={"start": start, "end": end, "tz": tz})


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ---------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("minute", "quiet"),
    [
        (22 * 60 - 1, False),  # 21:59
        (22 * 60, True),  # 22:00: the start is in
        (23 * 60 + 59, True),
        (0, True),  # midnight
        (6 * 60 + 59, True),
        (7 * 60, False),  # 07:00: the end is out
        (12 * 60, False),
    ],
)
def test_a_window_across_midnight_wraps(minute: int, quiet: bool) -> None:
    assert in_window("22:00", "07:00", minute) is quiet


@pytest.mark.parametrize(
    ("minute", "quiet"), [(779, False), (780, True), (839, True), (840, False)]
)
def test_a_window_within_one_day_is_half_open(minute: int, quiet: bool) -> None:
    assert in_window("13:00", "14:00", minute) is quiet


def test_quiet_hours_across_midnight_on_the_persons_clock() -> None:
    p = nightly()  # Berlin in December is UTC+1
    assert not may_interrupt(p, Channel.PUSH, task(), utc("2026-12-01T21:30:00"))  # 22:30
    assert not may_interrupt(p, Channel.PUSH, task(), utc("2026-12-02T05:59:00"))  # 06:59
    assert may_interrupt(p, Channel.PUSH, task(), utc("2026-12-02T06:00:00"))  # 07:00
    assert may_interrupt(p, Channel.PUSH, task(), utc("2026-12-01T20:59:00"))  # 21:59


def test_the_same_instant_in_another_zone_gives_another_answer() -> None:
    instant = utc("2026-12-01T23:30:00")  # 00:30 in Berlin, 18:30 in New York
    assert not may_interrupt(nightly(BERLIN), Channel.DESKTOP, task(), instant)
    assert may_interrupt(nightly(NEW_YORK), Channel.DESKTOP, task(), instant)


def test_daylight_saving_moves_the_window_against_utc() -> None:
    # New York jumps from EST (UTC-5) to EDT (UTC-4) on 2026-03-08: 11:30 UTC is 06:30
    # (quiet) the day before and 07:30 (not quiet) the day after.
    p = nightly(NEW_YORK)
    assert not may_interrupt(p, Channel.PUSH, task(), utc("2026-03-07T11:30:00"))
    assert may_interrupt(p, Channel.PUSH, task(), utc("2026-03-08T11:30:00"))


def test_an_end_inside_the_skipped_hour_takes_effect_at_the_jump() -> None:
    # Berlin skips 02:00-02:59 on 2026-03-29: 00:59 UTC is 01:59 CET, 01:00 UTC is 03:00 CEST.
    p = nightly(BERLIN, "22:00", "02:30")
    assert not may_interrupt(p, Channel.PUSH, task(), utc("2026-03-29T00:59:00"))
    assert may_interrupt(p, Channel.PUSH, task(), utc("2026-03-29T01:00:00"))


def test_the_repeated_hour_is_judged_by_the_clock_each_time() -> None:
    # Berlin shows 02:00-02:59 twice on 2026-10-25 (00:15 UTC is 02:15 CEST, 01:15 UTC is
    # 02:15 CET): a window ending at 02:30 is quiet at both.
    p = nightly(BERLIN, "22:00", "02:30")
    assert not may_interrupt(p, Channel.PUSH, task(), utc("2026-10-25T00:15:00"))
    assert not may_interrupt(p, Channel.PUSH, task(), utc("2026-10-25T01:15:00"))
    assert may_interrupt(p, Channel.PUSH, task(), utc("2026-10-25T01:45:00"))  # 02:45 CET


# ---------------------------------------------------------------- the other rules


def test_urgent_tasks_ring_through_quiet_hours() -> None:
    night = utc("2026-12-01T23:00:00")
    assert may_interrupt(nightly(), Channel.PUSH, task("urgent"), night)
    assert not may_interrupt(nightly(), Channel.PUSH, task("high"), night)


def test_a_muted_process_is_silent_even_when_urgent() -> None:
    p = prefs(muted_processes=["Invoice approval"])
    noon = utc("2026-12-01T12:00:00")
    assert silence(p, Channel.DESKTOP, task("urgent"), noon) is Silence.MUTED
    assert may_interrupt(p, Channel.DESKTOP, task(process="Leave request"), noon)
    assert may_interrupt(p, Channel.DESKTOP, task(process=None), noon)


def test_a_channel_switched_off_is_silent_and_the_other_is_not() -> None:
    p = prefs(channels={"desktop": True, "push": False})
    noon = utc("2026-12-01T12:00:00")
    assert silence(p, Channel.PUSH, task("urgent"), noon) is Silence.CHANNEL_OFF
    assert may_interrupt(p, Channel.DESKTOP, task(), noon)


def test_the_defaults_let_everything_through() -> None:
    assert Preferences() == DEFAULT
    assert DEFAULT.model_dump(mode="json") == {
        "channels": {"desktop": True, "push": True},
        "muted_processes": [],
        "quiet_hours": None,
    }
    assert may_interrupt(DEFAULT, Channel.PUSH, task(), utc("2026-12-01T03:00:00"))


# ---------------------------------------------------------------- validation


def error_types(body: object) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        Preferences.model_validate(body)
    return {e["type"] for e in caught.value.errors()}


@pytest.mark.parametrize("tz", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", "x" * 80])
def test_a_zone_not_in_the_iana_database_is_refused(tz: str) -> None:
    assert error_types({"quiet_hours": {"start": "22:00", "end": "07:00", "tz": tz}}) == {
        "bad_time_zone"
    }


@pytest.mark.parametrize("hhmm", ["24:00", "7:00", "07:60", "07:00:00", "", "noon", "0\u0667:00"])
def test_a_time_that_is_not_hh_mm_is_refused(hhmm: str) -> None:
    assert error_types({"quiet_hours": {"start": hhmm, "end": "07:00", "tz": BERLIN}}) == {
        "bad_time"
    }


def test_an_empty_window_is_refused() -> None:
    assert error_types({"quiet_hours": {"start": "07:00", "end": "07:00", "tz": BERLIN}}) == {
        "bad_time"
    }


def test_muted_processes_are_bounded_and_unique() -> None:
    names = [f"process {i}" for i in range(MAX_MUTED)]
    assert len(prefs(muted_processes=names).muted_processes) == MAX_MUTED
    assert "too_long" in error_types({"muted_processes": [*names, "one more"]})
    assert error_types({"muted_processes": ["a", "a"]}) == {"duplicate_process"}
    assert "blank_text" in error_types({"muted_processes": ["  "]})


def test_unknown_fields_are_refused() -> None:
    assert error_types({"channels": {"desktop": True, "sms": True}}) == {"extra_forbidden"}
    assert error_types({"quiet": None}) == {"extra_forbidden"}


# ---------------------------------------------------------------- the bridge's copy


ZONES = [BERLIN, NEW_YORK, "Asia/Kolkata", "Australia/Lord_Howe", "UTC", "Pacific/Chatham"]
HHMM = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30, 59]))


@settings(max_examples=300, deadline=None)
@given(
    start=HHMM,
    end=HHMM,
    tz=st.sampled_from(ZONES),
    seconds=st.integers(0, 3 * 366 * 86400),
    priority=st.sampled_from(["low", "normal", "high", "urgent"]),
    muted=st.booleans(),
    desktop=st.booleans(),
)
def test_the_bridge_decides_exactly_like_the_server(
    start: str, end: str, tz: str, seconds: int, priority: str, muted: bool, desktop: bool
) -> None:
    if start == end:
        return
    body: dict[str, Any] = {
        "channels": {"desktop": desktop, "push": True},
        "muted_processes": ["Invoice approval"] if muted else [],
        "quiet_hours": {"start": start, "end": end, "tz": tz},
    }
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    t = task(priority)
    server_says = may_interrupt(Preferences.model_validate(body), Channel.DESKTOP, t, now)
    bridge_says = bridge_quiet.may_notify(bridge_quiet.read(body), dict(t), now)  # type: ignore[arg-type]
    assert server_says is bridge_says


def test_the_bridge_reads_bad_preferences_as_the_defaults() -> None:
    junks: list[object] = [None, [], {"channels": "off"}, {"quiet_hours": {"start": "x"}}]
    for junk in junks:
        assert bridge_quiet.read(junk) == bridge_quiet.read({})
