"""The pure parts of the limits: token buckets, their eviction, the message meter,
credentials and the settings. No sockets: the clock is a number the test moves."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.auth import VerifiedTokens, mint_token
from server.errors import CloseCode, ConfigError, Unauthorized
from server.limits import (
    Buckets,
    MessageMeter,
    TokenBucket,
    burst_for,
    credential,
    key_id,
    retry_after,
)
from server.settings import Settings
from server.wire import ProtocolViolation

BASE_ENV = {"TASKBELL_SECRET": "s" * 40, "TASKBELL_PRODUCER_KEYS": "k"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=4.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token comes back in 1/rate
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)


def test_a_bucket_refills_at_its_rate_up_to_its_burst_only() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2.0, now=0.0)
    assert bucket.take(0.0) == bucket.take(0.0) == 0.0
    assert bucket.take(100.0) == 0.0  # long idle: full again, but not more than the burst
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) > 0


def test_the_burst_is_twice_the_rate_and_at_least_one_request() -> None:
    assert burst_for(20.0) == 40.0
    assert burst_for(0.1) == 1.0


def test_buckets_keep_callers_apart_and_refuse_over_the_rate() -> None:
    clock = FakeClock()
    buckets = Buckets(5.0, clock=clock)  # burst 10
    assert all(buckets.take("alice") == 0.0 for _ in range(10))
    wait = buckets.take("alice")
    assert wait == pytest.approx(0.2)
    assert buckets.take("bob") == 0.0  # bob has his own bucket
    clock.now += 1.0  # five tokens back for alice
    assert all(buckets.take("alice") == 0.0 for _ in range(5))
    assert buckets.take("alice") > 0


def test_idle_buckets_are_forgotten() -> None:
    clock = FakeClock()
    buckets = Buckets(1.0, clock=clock)  # burst 2: full again 2 s after the last call
    for i in range(1000):
        buckets.take(f"user-{i}")
    assert len(buckets) == 1000
    clock.now += 2.0
    buckets.take("late")
    assert len(buckets) == 1 and "late" in buckets


def test_a_bucket_still_refilling_is_kept() -> None:
    clock = FakeClock()
    buckets = Buckets(1.0, clock=clock)
    buckets.take("busy")
    buckets.take("busy")  # empty
    clock.now += 1.0  # half refilled: forgetting it would hand out a fresh burst
    buckets.take("other")
    assert "busy" in buckets
    assert buckets.take("busy") == 0.0
    assert buckets.take("busy") > 0


def test_the_number_of_buckets_is_bounded_even_under_a_flood_of_callers() -> None:
    clock = FakeClock()
    buckets = Buckets(1.0, clock=clock, max_keys=100)
    for i in range(10_000):
        buckets.take(f"user-{i}")
    assert len(buckets) <= 100
    assert "user-9999" in buckets and "user-0" not in buckets


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after(0.01) == 1
    assert retry_after(1.0) == 1
    assert retry_after(1.2) == 2


def test_a_producer_keys_bucket_id_is_a_hash_not_the_key() -> None:
    bucket = key_id("pk-secret-value")
    assert "pk-secret-value" not in bucket
    assert bucket == key_id("pk-secret-value") != key_id("pk-other")


def test_the_message_meter_allows_a_burst_of_twice_the_rate_then_refuses() -> None:
    clock = FakeClock()
    meter = MessageMeter(20.0, clock=clock)
    assert all(meter.allow() for _ in range(40))
    assert not meter.allow()
    clock.now += 1.0
    assert all(meter.allow() for _ in range(20))
    assert not meter.allow()


def test_the_message_meter_closes_with_4029_when_flooded() -> None:
    clock = FakeClock()
    meter = MessageMeter(1.0, clock=clock)  # burst 2
    meter.tick()
    meter.tick()
    with pytest.raises(ProtocolViolation) as caught:
        meter.tick()
    assert caught.value.code is CloseCode.TOO_MANY
    assert int(CloseCode.TOO_MANY) == 4029
    assert caught.value.reason == "too many messages"


def test_a_message_rate_of_zero_is_off() -> None:
    meter = MessageMeter(0.0, clock=FakeClock())
    assert all(meter.allow() for _ in range(10_000))


def _scope(
    headers: list[tuple[bytes, bytes]], path: str = "/api/v1/tasks", query: bytes = b""
) -> dict[str, Any]:
    return {"type": "http", "path": path, "headers": headers, "query_string": query}


def test_the_credential_comes_from_a_bearer_header_or_where_allowed_the_query() -> None:
    assert credential(_scope([(b"authorization", b"Bearer abc")])) == "abc"
    assert credential(_scope([(b"authorization", b"bearer  abc ")])) == "abc"
    assert credential(_scope([(b"authorization", b"Basic abc")])) is None
    assert credential(_scope([])) is None
    assert credential(_scope([], "/api/v1/events", b"token=t1&since=3")) == "t1"
    assert credential(_scope([], "/api/v1/tasks/t-1/open", b"token=t2")) == "t2"
    assert credential(_scope([], "/api/v1/me/tasks", b"token=t3")) is None


def test_settings_read_the_limits_with_their_defaults() -> None:
    settings = Settings.from_env(BASE_ENV)
    assert settings.rate_producer == 0.0  # producers: off unless set
    assert settings.rate_user == 20.0
    assert settings.max_sockets_per_user == 20
    assert settings.max_pending_sockets_per_address == 50
    assert settings.ws_message_rate == 20.0
    assert settings.header_timeout_s == settings.body_timeout_s == 10.0
    custom = Settings.from_env(
        {
            **BASE_ENV,
            "TASKBELL_RATE_PRODUCER": "50",
            "TASKBELL_RATE_USER": "0",
            "TASKBELL_MAX_SOCKETS_PER_USER": "5",
            "TASKBELL_MAX_PENDING_SOCKETS_PER_ADDRESS": "0",
            "TASKBELL_WS_MESSAGE_RATE": "2.5",
            "TASKBELL_HEADER_TIMEOUT_SECONDS": "3",
            "TASKBELL_BODY_TIMEOUT_SECONDS": "4.5",
        }
    )
    assert (custom.rate_producer, custom.rate_user, custom.ws_message_rate) == (50.0, 0.0, 2.5)
    assert (custom.max_sockets_per_user, custom.max_pending_sockets_per_address) == (5, 0)
    assert (custom.header_timeout_s, custom.body_timeout_s) == (3.0, 4.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TASKBELL_RATE_USER", "-1"),
        ("TASKBELL_RATE_PRODUCER", "nan"),
        ("TASKBELL_HEADER_TIMEOUT_SECONDS", "inf"),
        ("TASKBELL_MAX_SOCKETS_PER_USER", "-3"),
        ("TASKBELL_MAX_SOCKETS_PER_USER", "2.5"),
        ("TASKBELL_BODY_TIMEOUT_SECONDS", "soon"),
    ],
)
def test_settings_refuse_negative_or_malformed_limits(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE_ENV, name: value})


def test_verified_tokens_know_a_valid_token_and_refuse_others() -> None:
    secret = "s" * 40
    subjects = VerifiedTokens(Settings(secret=secret), size=2)

    def user(token: str) -> str | None:
        who = subjects.who(token)
        return None if who is None else who.id

    alice = mint_token(secret, "alice", 3600)
    assert user(alice) == "alice"
    assert user(alice) == "alice"  # remembered
    assert user(mint_token("other-secret-" + "x" * 30, "alice", 3600)) is None
    assert user("not-a-token") is None
    expired = mint_token(secret, "bob", 10, now=time.time() - 60)
    assert user(expired) is None
    for name in ("carol", "dave", "erin"):
        assert user(mint_token(secret, name, 3600)) == name
    assert len(subjects._known) <= 2
    assert all(alice.encode() not in key for key in subjects._known)
    with pytest.raises(Unauthorized):
        subjects.verify(expired)  # the same refusal as verify_token, never a remembered pass
