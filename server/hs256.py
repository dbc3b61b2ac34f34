"""The common user token, verified in a few microseconds; PyJWT decides everything else.

PyJWT takes about 50 µs to verify an HS256 token (preparing the key, decoding the
header, checking every option), a tenth of a whole connect. Nearly every token a
server sees is the same shape: the header ``{"alg":"HS256","typ":"JWT"}``, a signature
by one of the configured secrets, and plain integer times. ``claims`` verifies exactly
that shape and returns the claims only when PyJWT, with the options ``auth._decode``
gives it, would return the same claims; for anything else (another header, a bad or
unknown signature, a time that is not a plain integer, an expired or not yet valid
token, an audience or issuer that does not match, a claim PyJWT checks the type of) it
returns None, and the caller asks PyJWT, whose verdict and error stand.

So this path only ever says yes, and only to a token signed with a configured secret:
the signature is an HMAC-SHA256 over the token's own first two segments, compared in
constant time with the third. ``tests/test_hs256.py`` checks the agreement with PyJWT
over generated tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, TypeGuard

import orjson

# The headers accepted here, as base64url segments (the JSON is fixed, so the segment is).
_HEADERS = frozenset(
    base64.urlsafe_b64encode(orjson.dumps(h)).rstrip(b"=").decode()
    for h in ({"alg": "HS256", "typ": "JWT"}, {"typ": "JWT", "alg": "HS256"}, {"alg": "HS256"})
)


def _segment(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _plain_int(value: Any) -> TypeGuard[int]:
    """An int (not a bool, not a float) that JSON and PyJWT read the same everywhere."""
    return type(value) is int and -(2**53) < value < 2**53


def claims(
    token: str,
    secrets: tuple[bytes, ...],
    *,
    audience: str,
    issuer: str,
    leeway: float,
    now: float | None = None,
) -> dict[str, Any] | None:
    """The token's claims when it is the common shape and valid (see the module's
    docstring); None when PyJWT must decide. ``secrets`` as bytes, ``audience`` and
    ``issuer`` "" when not configured."""
    header, dot, rest = token.partition(".")
    if not dot or header not in _HEADERS:
        return None
    payload, dot, signature = rest.partition(".")
    if not dot or "." in signature or not payload.isascii() or not signature.isascii():
        return None
    signed = token[: len(header) + 1 + len(payload)].encode()
    expected = signature.encode()
    for secret in secrets:
        mac = hmac.new(secret, signed, hashlib.sha256).digest()
        if hmac.compare_digest(base64.urlsafe_b64encode(mac).rstrip(b"="), expected):
            break
    else:
        return None
    try:
        found = orjson.loads(_segment(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(found, dict):
        return None
    at = time.time() if now is None else now
    exp = found.get("exp")
    if not _plain_int(exp) or exp <= at - leeway:
        return None
    for name in ("iat", "nbf"):
        if name in found and (not _plain_int(found[name]) or found[name] > at + leeway):
            return None
    if not isinstance(found.get("sub"), str):
        return None
    if "jti" in found and not isinstance(found["jti"], str):
        return None
    if audience:
        if found.get("aud") != audience:
            return None
    elif "aud" in found:
        return None
    if issuer and found.get("iss") != issuer:
        return None
    return found
