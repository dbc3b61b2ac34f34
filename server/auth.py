"""Who is calling: people carry signed JWTs (HS256, ``sub`` = user, ``exp`` and ``iat``
required); producers carry an API key from settings. Tokens never reach a log line.

Token rules (settings in ``server/settings.py``):

- ``exp - iat`` may be at most ``token_max_lifetime_s`` (24 h): a token without ``iat``,
  or one that lives longer, is refused with ``token_lifetime``, so a leaked token cannot
  be good for a year;
- ``aud`` and ``iss`` must match ``token_audience`` / ``token_issuer`` when those are set;
- ``token_leeway_s`` (30 s) of clock difference is tolerated on ``exp``, ``iat``, ``nbf``;
- key rotation: the first secret signs, every configured secret verifies;
- ``roles`` (optional) is a list of rights the host application grants the person:
  ``process-admin`` (``PROCESS_ADMIN``) lets them read and steer their tenant's process
  instances and definitions (``api.common.process_admin``). Anything but a list of names
  is refused, so a mistyped claim never passes for "no rights" unnoticed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from server import hs256
from server.errors import Unauthorized
from server.feeds import DEFAULT_TENANT, is_tenant, user_feed, user_key
from server.settings import Settings

ALGORITHM = "HS256"
LOCALE_MAX = 35  # the longest ``locale`` claim kept (a BCP 47 tag is far shorter)
PROCESS_ADMIN = "process-admin"  # the ``roles`` entry of people who steer processes
MAX_ROLES = 32


@dataclass(frozen=True, slots=True)
class User:
    id: str
    expires_at: float
    issued_at: float = 0.0
    tenant: str = DEFAULT_TENANT  # the ``tid`` claim
    locale: str | None = None  # the ``locale`` claim, as sent (``server.i18n`` reads it)
    roles: frozenset[str] = frozenset()  # the ``roles`` claim

    @property
    def is_process_admin(self) -> bool:
        return PROCESS_ADMIN in self.roles

    @property
    def feed(self) -> str:
        """This person's own feed on the wire (``user:<id>``)."""
        return user_feed(self.id)

    @property
    def key(self) -> str:
        """This person's own feed's key (``<tenant>/user:<id>``)."""
        return user_key(self.tenant, self.id)


def mint_token(
    secret: str,
    user: str,
    ttl_s: int = 12 * 3600,
    now: float | None = None,
    *,
    audience: str = "",
    issuer: str = "",
    tenant: str = DEFAULT_TENANT,
    locale: str | None = None,
    roles: Sequence[str] = (),
) -> str:
    """A user token for ``user`` valid for ``ttl_s`` seconds, with ``iat`` (and ``tid``
    when the tenant is not the default one, ``locale`` when given, ``roles`` when there
    are any)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": user, "iat": issued, "exp": issued + ttl_s}
    if tenant != DEFAULT_TENANT:
        claims["tid"] = tenant
    if roles:
        claims["roles"] = list(roles)
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    if locale is not None:
        claims["locale"] = locale
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def mint_for(
    settings: Settings,
    user: str,
    ttl_s: int | None = None,
    tenant: str = DEFAULT_TENANT,
    roles: Sequence[str] = (),
) -> str:
    """A token this server accepts: signed with the first secret, carrying the
    configured audience and issuer."""
    return mint_token(
        settings.secret,
        user,
        settings.token_ttl_s if ttl_s is None else ttl_s,
        audience=settings.token_audience,
        issuer=settings.token_issuer,
        tenant=tenant,
        roles=roles,
    )


def is_role_name(value: object) -> bool:
    """A ``roles`` entry: 1 to 64 characters of letters, digits, ``-``, ``_``, ``.``, ``:``."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and all(c.isascii() and (c.isalnum() or c in "-_.:") for c in value)
    )


def _roles(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("roles", [])
    if not isinstance(raw, list) or len(raw) > MAX_ROLES or not all(map(is_role_name, raw)):
        raise Unauthorized(
            "the token's roles claim is not a list of role names", code="invalid_token"
        )
    return frozenset(raw)


@functools.lru_cache(maxsize=8)
def _usable(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    """The secrets PyJWT verifies HS256 with (it refuses keys that look like public keys)."""
    hmac_alg = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    usable = []
    for secret in secrets:
        try:
            usable.append(hmac_alg.prepare_key(secret))
        except jwt.InvalidKeyError:
            continue
    return tuple(usable)


def _decode(settings: Settings, token: str) -> dict[str, Any]:
    fast = hs256.claims(
        token,
        _usable(settings.secrets),
        audience=settings.token_audience,
        issuer=settings.token_issuer,
        leeway=settings.token_leeway_s,
    )
    if fast is not None:
        return fast  # (the common token: what PyJWT would return, server/hs256.py)
    required = ["exp", "sub"]
    if settings.token_audience:
        required.append("aud")
    if settings.token_issuer:
        required.append("iss")
    for secret in settings.secrets:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={"require": required},
                audience=settings.token_audience or None,
                issuer=settings.token_issuer or None,
                leeway=settings.token_leeway_s,
            )
        except jwt.InvalidSignatureError:
            continue  # signed with another of the configured secrets, perhaps
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", code="token_expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another audience", code="invalid_token") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token has another issuer", code="invalid_token") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is not valid", code="invalid_token") from None
        return claims
    raise Unauthorized("the token is not valid", code="invalid_token")


def verify_token(settings: Settings, token: str) -> User:
    """Raises ``Unauthorized`` unless ``token`` is a valid, unexpired user token that
    follows the token rules of ``settings``."""
    claims = _decode(settings, token)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 200 or any(c.isspace() for c in sub):
        raise Unauthorized("the token has no usable subject", code="invalid_token")
    exp = claims["exp"]
    iat = claims.get("iat")
    limit = settings.token_max_lifetime_s
    if limit:
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise Unauthorized(
                "the token has no iat (issued at) claim; it is needed to bound its lifetime",
                code="token_lifetime",
            )
        if exp - iat > limit:
            raise Unauthorized(
                f"the token lives longer than the {limit} s this server accepts",
                code="token_lifetime",
            )
    tid = claims.get("tid", DEFAULT_TENANT)
    if not isinstance(tid, str) or not is_tenant(tid):
        raise Unauthorized("the token's tid claim is not a tenant name", code="invalid_token")
    # The language is a wish, not a credential: a claim that is no short string is ignored.
    locale = claims.get("locale")
    if not isinstance(locale, str) or len(locale) > LOCALE_MAX:
        locale = None
    issued = float(iat) if isinstance(iat, int | float) else 0.0
    return User(sub, float(exp), issued, tid, locale, _roles(claims))


class VerifiedTokens:
    """Whose user token is this? A full verification (signature and claims, PyJWT) the
    first time, then a lookup until the token expires: a token that passed once passes
    until then (its signature and claims do not change), and a person's tabs, reconnects
    and requests present the same token again and again, so verifying is otherwise a
    large part of every connect. Revocation is not remembered here: callers check it on
    every use. Holds at most ``size`` tokens, by a digest (never the token itself)."""

    def __init__(self, settings: Settings, *, size: int = 10_000) -> None:
        self.settings = settings
        self.size = size
        self._known: dict[bytes, User] = {}

    def verify(self, token: str) -> User:
        """The person a valid token names; raises ``Unauthorized`` as ``verify_token``."""
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()
        known = self._known.get(digest)
        if known is not None and known.expires_at > time.time():
            return known
        who = verify_token(self.settings, token)
        if len(self._known) >= self.size:
            del self._known[next(iter(self._known))]  # the oldest
        self._known[digest] = who
        return who

    def who(self, token: str) -> User | None:
        """The person a valid token names, else None."""
        try:
            return self.verify(token)
        except Unauthorized:
            return None


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization: Bearer header", code="missing_credentials")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("expected Authorization: Bearer <token>", code="missing_credentials")
    return value.strip()


MIN_TENANT_KEY = 8  # "x=y" is "tenant=key" only when y is this long (else a bare key)


@functools.lru_cache(maxsize=8)
def producer_tenants(entries: frozenset[str]) -> tuple[tuple[bytes, str], ...]:
    """``TASKBELL_PRODUCER_KEYS`` entries as (key, tenant): ``tenant=key`` binds a key to
    a tenant; a bare key (or one whose part after ``=`` is shorter than 8 characters,
    e.g. base64 padding) belongs to ``default``."""
    out = []
    for entry in sorted(entries):
        tenant, sep, key = entry.partition("=")
        if sep and is_tenant(tenant) and len(key) >= MIN_TENANT_KEY:
            out.append((key.encode(), tenant))
        else:
            out.append((entry.encode(), DEFAULT_TENANT))
    return tuple(out)


def producer_tenant(settings: Settings, key: str) -> str | None:
    """The tenant of producer key ``key``, or None when it is no producer key. Every
    configured key is compared (in constant time), whichever matches."""
    given = key.encode()
    found: str | None = None
    for candidate, tenant in producer_tenants(settings.producer_keys):
        if hmac.compare_digest(candidate, given):
            found = tenant
    return found


def is_producer_key(settings: Settings, key: str) -> bool:
    return producer_tenant(settings, key) is not None
