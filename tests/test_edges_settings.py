"""Settings: every default is written once, on the dataclass; ``from_env`` with nothing
set gives exactly those defaults."""

from __future__ import annotations

from dataclasses import fields, replace

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
