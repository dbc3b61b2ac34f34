"""The fast path for the common user token (``server/hs256.py``) says yes only where
PyJWT, with the options ``auth._decode`` gives it, says yes with the same claims; for
generated tokens of every shape (headers, secrets, times, audiences, issuers, claim
types) and for the tokens this server mints, where it must say yes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import auth, hs256

SECRET = "s" * 40
PREVIOUS = "p" * 40
OTHER = "o" * 40
NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make(header: dict[str, Any], claims: dict[str, Any], secret: str) -> str:
    head = b64(json.dumps(header, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def pyjwt(token: str, audience: str, issuer: str, leeway: float) -> dict[str, Any] | None:
    """What PyJWT decides, with ``auth._decode``'s options (None: refused)."""
    required = ["exp", "sub"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
    for secret in (SECRET, PREVIOUS):
        try:
            found: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={"require": required},
                audience=audience or None,
                issuer=issuer or None,
                leeway=leeway,
            )
            return found
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            return None
    return None


def fast(
    token: str, audience: str, issuer: str, leeway: float, now: float | None = None
) -> dict[str, Any] | None:
    secrets = (SECRET.encode(), PREVIOUS.encode())
    return hs256.claims(token, secrets, audience=audience, issuer=issuer, leeway=leeway, now=now)


@contextmanager
def pyjwt_at(now: float) -> Iterator[None]:
    """PyJWT's clock (``datetime.now`` in ``jwt.api_jwt``) stopped at ``now``."""

    class Stopped(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(now, tz)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jwt.api_jwt, "datetime", Stopped)
        yield


HEADERS = st.sampled_from(
    [
        {"alg": "HS256", "typ": "JWT"},
        {"typ": "JWT", "alg": "HS256"},
        {"alg": "HS256"},
        {"alg": "HS256", "typ": "JWT", "kid": "k1"},
        {"alg": "HS512", "typ": "JWT"},
        {"alg": "none", "typ": "JWT"},
        {"alg": "HS256", "typ": "JWT", "crit": ["b64"], "b64": False},
        {"alg": "HS256", "typ": "at+jwt"},
    ]
)
TIMES = st.one_of(
    st.integers(NOW - 100_000, NOW + 100_000),
    st.integers(NOW - 60, NOW + 60),
    st.floats(NOW - 100, NOW + 100),
    st.sampled_from([True, False, None, "1800000100", 2**60, -(2**60), 0]),
)
TEXTS = st.one_of(st.sampled_from(["alice", "", "app", "other", " x"]), st.integers(), st.none())


def mostly(usual: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four (so many tokens pass), else anything of ``other``."""
    return st.one_of(st.just(usual), st.just(usual), st.just(usual), other)


@st.composite
def tokens(draw: st.DrawFn) -> tuple[str, str, str, float]:
    claims: dict[str, Any] = {}
    for name, usual, values in (
        ("sub", "alice", TEXTS),
        ("exp", NOW + 3600, TIMES),
        ("iat", NOW - 10, TIMES),
        ("nbf", NOW - 10, TIMES),
        ("aud", "app", st.one_of(TEXTS, st.lists(st.sampled_from(["app", "other"]), max_size=2))),
        ("iss", "app", TEXTS),
        ("jti", "j1", TEXTS),
        ("tid", "acme", st.sampled_from(["default", 7])),
    ):
        if draw(st.booleans()):
            claims[name] = draw(mostly(usual, values))
    secret = draw(mostly(SECRET, st.sampled_from([PREVIOUS, OTHER])))
    header: dict[str, Any] = draw(mostly({"alg": "HS256", "typ": "JWT"}, HEADERS))
    token = make(header, claims, secret)
    audience = draw(st.sampled_from(["", "app"]))
    issuer = draw(st.sampled_from(["", "app"]))
    return token, audience, issuer, draw(st.sampled_from([0.0, 30.0]))


@settings(max_examples=3000, deadline=None)
@given(tokens())
def test_it_only_says_yes_where_pyjwt_says_yes_with_the_same_claims(
    case: tuple[str, str, str, float],
) -> None:
    token, audience, issuer, leeway = case
    mine = fast(token, audience, issuer, leeway, now=NOW + 0.5)
    if mine is not None:
        with pyjwt_at(NOW + 0.5):
            assert mine == pyjwt(token, audience, issuer, leeway)


@pytest.mark.parametrize("audience,issuer", [("", ""), ("app", ""), ("app", "iss-1")])
def test_the_tokens_this_server_mints_take_the_fast_path(audience: str, issuer: str) -> None:
    for secret in (SECRET, PREVIOUS):
        token = auth.mint_token(
            secret,
            "alice",
            3600,
            audience=audience,
            issuer=issuer,
            tenant="acme",
            roles=["process-admin"],
            locale="de",
        )
        mine = fast(token, audience, issuer, 30)
        assert mine is not None, "the common token is verified here"
        assert mine == pyjwt(token, audience, issuer, 30)
        assert mine["roles"] == ["process-admin"] and mine["tid"] == "acme"


def test_a_forged_or_altered_token_is_left_to_pyjwt_which_refuses_it() -> None:
    good = auth.mint_token(SECRET, "alice", 3600)
    head, body, sig = good.split(".")
    evil_body = b64(json.dumps({"sub": "mallory", "exp": int(time.time()) + 60}).encode())
    for token in (
        f"{head}.{evil_body}.{sig}",  # claims swapped, signature kept
        auth.mint_token(OTHER, "alice", 3600),  # signed with a secret not configured
        f"{head}.{body}.{sig[:-2]}",  # signature cut
        f"{head}.{body}.{sig}=",  # not the canonical signature
        f"{head}.{body}",
        f"{head}.{body}.{sig}.x",
        good.replace(head, b64(b'{"alg":"none","typ":"JWT"}')),
    ):
        assert fast(token, "", "", 30) is None
        assert pyjwt(token, "", "", 30) is None or token.endswith("=")


def test_times_at_the_edges_match_pyjwt() -> None:
    for leeway in (0.0, 30.0):
        for delta in (-31, -30, -29, -1, 0, 1, 29, 30, 31):
            for name in ("exp", "iat", "nbf"):
                claims = {"sub": "alice", "exp": NOW + 3600, name: NOW + delta}
                token = make({"alg": "HS256", "typ": "JWT"}, claims, SECRET)
                mine = fast(token, "", "", leeway, now=float(NOW))
                with pyjwt_at(float(NOW)):
                    theirs = pyjwt(token, "", "", leeway)
                assert (mine is None) == (theirs is None), (name, delta, leeway)
                assert mine is None or mine == theirs
