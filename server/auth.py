"""Who is calling: people carry signed JWTs (HS256, ``sub`` = user, ``exp`` required);
producers carry an API key from settings. Tokens never reach a log line."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import jwt

from server.errors import Unauthorized
from server.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    expires_at: float


def mint_token(secret: str, user: str, ttl_s: int = 12 * 3600, now: float | None = None) -> str:
    """A user token for ``user`` valid for ``ttl_s`` seconds."""
    issued = int(now if now is not None else time.time())
    claims = {"sub": user, "iat": issued, "exp": issued + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> User:
    """Raises ``Unauthorized`` unless ``token`` is a valid, unexpired user token."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired", code="token_expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("the token is not valid", code="invalid_token") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 200 or any(c.isspace() for c in sub):
        raise Unauthorized("the token has no usable subject", code="invalid_token")
    return User(sub, float(claims["exp"]))


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization: Bearer header", code="missing_credentials")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("expected Authorization: Bearer <token>", code="missing_credentials")
    return value.strip()


def is_producer_key(settings: Settings, key: str) -> bool:
    found = False
    for candidate in settings.producer_keys:
        found |= hmac.compare_digest(candidate.encode(), key.encode())
    return found
