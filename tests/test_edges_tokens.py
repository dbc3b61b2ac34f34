"""Token rules: a bounded lifetime (``iat`` required), optional audience and issuer, a
30 s clock leeway, and key rotation (the first secret signs, every one verifies)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect

from server.auth import mint_token
from server.errors import CloseCode, ConfigError
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET, Live, make_settings, serve
from tests.support.client import FeedClient
from tests.support.tasks import assert_error
from tests.test_cli_ops import run_cli

OLD_SECRET = "old-secret-0123456789abcdef0123456789abcdef"
OTHER_SECRET = "other-secret-0123456789abcdef0123456789abcd"


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def claims(*, life: int = 3600, age: int = 0, **extra: str) -> dict[str, Any]:
    """alice's, issued ``age`` seconds ago, living ``life`` seconds from then."""
    iat = int(time.time()) - age
    return {"sub": "alice", "iat": iat, "exp": iat + life, **extra}


async def counter(live: Live, tok: str) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=live.base_url, headers={"Authorization": f"Bearer {tok}"}
    ) as c:
        return await c.get("/api/v1/me/counter")


@pytest.fixture
async def strict(sqlite_url: str) -> AsyncIterator[Live]:
    """A server that wants an audience and an issuer, and still accepts an old secret."""
    settings = make_settings(
        sqlite_url,
        token_audience="taskbell",
        token_issuer="https://crm.example",
        previous_secrets=(OLD_SECRET,),
    )
    async with serve(settings) as running:
        yield running


async def test_a_token_without_iat_is_401_token_lifetime(embedded: Live) -> None:
    body = claims()
    del body["iat"]
    assert_error(await counter(embedded, signed(body)), 401, "token_lifetime")


async def test_a_token_living_longer_than_the_maximum_is_401(embedded: Live) -> None:
    tok = signed(claims(life=24 * 3600 + 1))
    assert_error(await counter(embedded, tok), 401, "token_lifetime")


async def test_a_token_living_exactly_the_maximum_is_accepted(embedded: Live) -> None:
    assert (await counter(embedded, signed(claims(life=24 * 3600)))).status_code == 200


async def test_the_maximum_lifetime_is_a_setting(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, token_max_lifetime_s=600, token_ttl_s=60)) as live:
        short = await counter(live, signed(claims(life=600)))
        long = await counter(live, signed(claims(life=601)))
    assert short.status_code == 200
    assert_error(long, 401, "token_lifetime")


async def test_a_websocket_with_a_token_without_iat_is_closed_4001(embedded: Live) -> None:
    body = claims()
    del body["iat"]
    async with FeedClient(embedded.ws_url, signed(body)) as feed:
        feed.ws = await connect(embedded.ws_url)
        await feed.send({"type": "auth", "token": feed.token})
        code, reason = await feed.closed_with()
    assert (code, reason) == (CloseCode.NOT_AUTHENTICATED, "token_lifetime")


async def test_a_token_expired_less_than_the_leeway_ago_is_accepted(embedded: Live) -> None:
    tok = signed(claims(life=3600, age=3600 + 10))
    assert (await counter(embedded, tok)).status_code == 200


async def test_a_token_expired_more_than_the_leeway_ago_is_401(embedded: Live) -> None:
    tok = signed(claims(life=3600, age=3600 + 45))
    assert_error(await counter(embedded, tok), 401, "token_expired")


async def test_a_token_issued_in_the_future_past_the_leeway_is_401(embedded: Live) -> None:
    tok = signed(claims(life=3600, age=-120))
    assert_error(await counter(embedded, tok), 401, "invalid_token")


async def test_the_right_audience_and_issuer_are_accepted(strict: Live) -> None:
    tok = signed(claims(aud="taskbell", iss="https://crm.example"))
    assert (await counter(strict, tok)).status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"iss": "https://crm.example"},
        {"aud": "another-service", "iss": "https://crm.example"},
        {"aud": "taskbell"},
        {"aud": "taskbell", "iss": "https://evil.example"},
    ],
)
async def test_a_missing_or_wrong_audience_or_issuer_is_401(
    strict: Live, extra: dict[str, str]
) -> None:
    assert_error(await counter(strict, signed({**claims(), **extra})), 401, "invalid_token")


async def test_a_token_signed_with_a_previous_secret_is_accepted(strict: Live) -> None:
    tok = signed(claims(aud="taskbell", iss="https://crm.example"), OLD_SECRET)
    assert (await counter(strict, tok)).status_code == 200


async def test_a_token_signed_with_an_unknown_secret_is_401(strict: Live) -> None:
    tok = signed(claims(aud="taskbell", iss="https://crm.example"), OTHER_SECRET)
    assert_error(await counter(strict, tok), 401, "invalid_token")


def test_the_first_of_several_secrets_signs_and_all_verify() -> None:
    env = {"TASKBELL_SECRET": f"{SECRET}, {OLD_SECRET}", "TASKBELL_PRODUCER_KEYS": "k"}
    settings = Settings.from_env(env)
    assert (settings.secret, settings.previous_secrets) == (SECRET, (OLD_SECRET,))
    minted = mint_token(settings.secret, "alice")
    assert jwt.decode(minted, SECRET, algorithms=["HS256"])["sub"] == "alice"


def test_every_listed_secret_must_be_long_enough() -> None:
    with pytest.raises(ConfigError, match="32"):
        Settings.from_env({"TASKBELL_SECRET": f"{SECRET},short", "TASKBELL_PRODUCER_KEYS": "k"})


def test_token_settings_are_read_from_the_environment() -> None:
    env = {
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "TASKBELL_TOKEN_MAX_LIFETIME": "3600",
        "TASKBELL_TOKEN_TTL": "600",
        "TASKBELL_TOKEN_AUDIENCE": "taskbell",
        "TASKBELL_TOKEN_ISSUER": "https://crm.example",
    }
    settings = Settings.from_env(env)
    assert (settings.token_max_lifetime_s, settings.token_audience, settings.token_issuer) == (
        3600,
        "taskbell",
        "https://crm.example",
    )


def test_a_token_ttl_over_the_maximum_lifetime_refuses_to_start() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": "k", "TASKBELL_TOKEN_TTL": "90000"}
    with pytest.raises(ConfigError, match="TASKBELL_TOKEN_MAX_LIFETIME"):
        Settings.from_env(env)


def test_the_token_command_mints_iat_audience_and_issuer() -> None:
    env = {
        "TASKBELL_SECRET": f"{SECRET},{OLD_SECRET}",
        "TASKBELL_PRODUCER_KEYS": "k",
        "TASKBELL_TOKEN_AUDIENCE": "taskbell",
        "TASKBELL_TOKEN_ISSUER": "https://crm.example",
    }
    result = run_cli("token", "alice", "--ttl", "60", env=env)
    assert result.returncode == 0, result.stderr
    got = jwt.decode(
        result.stdout.strip().splitlines()[-1],
        SECRET,
        algorithms=["HS256"],
        audience="taskbell",
        issuer="https://crm.example",
    )
    assert got["exp"] - got["iat"] == 60


def test_the_token_command_refuses_a_ttl_over_the_maximum() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": "k"}
    result = run_cli("token", "alice", "--ttl", str(48 * 3600), env=env)
    assert result.returncode == 2
    assert "TASKBELL_TOKEN_MAX_LIFETIME" in result.stderr
