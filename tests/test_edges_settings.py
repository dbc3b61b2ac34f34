"""Settings: every default is written once, on the dataclass; ``from_env`` with nothing
set gives exactly those defaults."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from server.errors import ConfigError
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET


def test_from_env_with_nothing_set_gives_the_dataclass_defaults() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY}
    expected = replace(Settings(), secret=SECRET, producer_keys=frozenset({PRODUCER_KEY}))
    assert Settings.from_env(env) == expected


def test_blank_variables_leave_the_defaults() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY, "PORT": " "}
    env |= {"TASKBELL_TOKEN_MAX_LIFETIME": "", "TASKBELL_FRAME_ANCESTORS": ""}
    got = Settings.from_env(env)
    assert (got.port, got.token_max_lifetime_s, got.frame_ancestors) == (8000, 86400, "'self'")


def test_defaults_lists_every_field() -> None:
    assert set(Settings.defaults()) == {f.name for f in fields(Settings)}


BASE = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": "k"}


@pytest.mark.parametrize("raw", ["-1", "31", "0.05"])
def test_a_heartbeat_outside_its_range_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="TASKBELL_HEARTBEAT_SECONDS"):
        Settings.from_env(
            {
                "TASKBELL_SECRET": SECRET,
                "TASKBELL_PRODUCER_KEYS": "k",
                "TASKBELL_HEARTBEAT_SECONDS": raw,
            }
        )


def test_no_heartbeat_at_all_is_0() -> None:
    env = {
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": "k",
        "TASKBELL_HEARTBEAT_SECONDS": "0",
    }
    assert Settings.from_env(env).heartbeat_s == 0
