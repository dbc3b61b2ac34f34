"""Per-process limits at the edges (docs/protocol.md, "Limits per caller").

- Request rates on ``/api/v1/*`` (and ``/events``) per producer key and per user:
  token buckets (``TASKBELL_RATE_PRODUCER``, ``TASKBELL_RATE_USER``, requests per
  second, a burst of twice that); over the rate: 429 ``rate_limited`` with
  ``Retry-After``. Unauthenticated calls are not limited here (they get 401 anyway).
- Sockets: at most ``TASKBELL_MAX_SOCKETS_PER_USER`` open ``/ws`` sockets and event
  streams per user, and at most ``TASKBELL_MAX_PENDING_SOCKETS_PER_ADDRESS`` sockets per
  client address that have not authenticated yet; over a cap a socket is closed with
  4029 (``CloseCode.TOO_MANY``), a stream answers 429.
- Messages per socket after auth (``TASKBELL_WS_MESSAGE_RATE`` per second, a burst of
  twice that): a flooding client is closed with 4029 ``too many messages``.

Every count lives in this process only: instances do not share them, so N instances
behind a balancer allow up to N times each rate. ``TokenBucket``, ``Buckets`` and
``MessageMeter`` are pure (an injected clock); ``Edge`` holds one app's counts, and the
ASGI gate (``server.gate``) asks it about each request. Producer keys never become
bucket ids or log lines: a bucket is named by a hash of the key.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Scope

from server.api.common import Checked, parts_of
from server.auth import User, VerifiedTokens, producer_tenant
from server.errors import CloseCode, TooManyRequests
from server.settings import Settings
from server.wire import ProtocolViolation

Clock = Callable[[], float]

MAX_BUCKETS = 100_000  # a hard bound on remembered callers, whatever the traffic
SOCKET_RETRY_AFTER_S = 5  # what a stream over the per-user cap is told to wait


def burst_for(rate: float) -> float:
    """The burst that goes with ``rate``: twice the rate, but at least one request."""
    return max(1.0, 2.0 * rate)


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second; a call takes one."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is one
        (nothing is taken then)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        """True when the bucket would be full by ``now``: as good as a new one."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class Buckets:
    """Token buckets by key. A bucket idle long enough to be full again is forgotten
    (a new one is the same), so memory follows the callers of the last ``burst / rate``
    seconds; ``max_keys`` bounds it even then (the longest idle go first)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = MAX_BUCKETS,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst_for(rate) if burst is None else burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def ids(self) -> list[str]:
        """The keys of the buckets kept now."""
        return list(self._buckets)

    def take(self, key: str) -> float:
        """0.0 when ``key`` may go ahead, else the seconds to wait."""
        now = self.clock()
        self._evict(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        # Least recently used first: stop at the first one still refilling.
        while buckets:
            oldest = next(iter(buckets.values()))
            if not oldest.is_full(now) and len(buckets) < self.max_keys:
                return
            buckets.popitem(last=False)


class MessageMeter:
    """Messages of one socket: ``rate`` per second with a burst of twice that."""

    __slots__ = ("_bucket", "clock")

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._bucket = TokenBucket.full(rate, burst_for(rate), clock()) if rate > 0 else None

    def allow(self) -> bool:
        """Count one message; False once the client sends faster than allowed."""
        return self._bucket is None or self._bucket.take(self.clock()) == 0.0

    def tick(self) -> None:
        """Count one message; raises ``ProtocolViolation`` (4029) over the rate."""
        if not self.allow():
            raise ProtocolViolation(CloseCode.TOO_MANY, "too many messages")


def retry_after(wait_s: float) -> int:
    """``Retry-After`` in whole seconds, at least 1."""
    return max(1, math.ceil(wait_s))


def key_id(key: str) -> str:
    """A producer key's bucket id: a hash, never the key itself."""
    return "p:" + hashlib.sha256(key.encode()).hexdigest()[:24]


class Edge:
    """One app's counts: request buckets and not-yet-authenticated sockets."""

    def __init__(self, settings: Settings, *, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.producers = (
            Buckets(settings.rate_producer, clock=clock) if settings.rate_producer > 0 else None
        )
        self.users = Buckets(settings.rate_user, clock=clock) if settings.rate_user > 0 else None
        self.subjects = VerifiedTokens(settings)  # shared with Parts.authenticate
        self.pending: Counter[str] = Counter()
        self._key_ids: dict[str, str] = {}  # producer key -> its bucket id (few keys)

    @property
    def limits_requests(self) -> bool:
        return self.producers is not None or self.users is not None

    def caller(self, credential: str | None) -> Checked | None:
        """Who calls with this bearer credential, as far as the limits need to know: a
        producer key, or a valid user token while users are limited; None otherwise
        (no credential, or one that the endpoint will refuse with 401)."""
        if not credential:
            return None
        tenant = producer_tenant(self.settings, credential)
        if tenant is not None:
            return Checked(credential, None, tenant)
        if self.users is None:
            return None
        who = self.subjects.who(credential)
        return None if who is None else Checked(credential, who)

    def wait(self, caller: Checked | None) -> float:
        """0.0 when ``caller`` may go ahead, else the seconds to wait."""
        if caller is None:
            return 0.0
        if caller.user is not None:
            return 0.0 if self.users is None else self.users.take("u:" + caller.user.id)
        if self.producers is None:
            return 0.0
        bucket = self._key_ids.get(caller.credential)
        if bucket is None:
            bucket = self._key_ids[caller.credential] = key_id(caller.credential)
        return self.producers.take(bucket)

    def request_wait(self, credential: str | None) -> float:
        """0.0 when a call with this bearer credential may go ahead, else the seconds to
        wait. Unknown or invalid credentials are not limited here (they get 401)."""
        return self.wait(self.caller(credential))

    # ---------------------------------------------------------------- sockets

    def arriving(self, address: str) -> bool:
        """Count a socket that has not authenticated yet; False over the cap."""
        cap = self.settings.max_pending_sockets_per_address
        if cap and self.pending[address] >= cap:
            return False
        self.pending[address] += 1
        return True

    def arrived(self, address: str) -> None:
        """The socket authenticated, failed to, or left."""
        self.pending[address] -= 1
        if self.pending[address] <= 0:
            del self.pending[address]


def edge(app: Any) -> Edge:
    """The app's ``Edge`` (made by ``install``)."""
    found: Edge = app.state.edge
    return found


def install(app: Starlette, settings: Settings) -> Edge:
    """Give ``app`` its counts (``edge(app)``); the gate enforces the request rates."""
    found = app.state.edge = Edge(settings)
    return found


# -------------------------------------------------------------------- the hooks


def client_address(scope: Scope) -> str:
    """The client address a socket's limits count under (after the proxy headers)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def ws_arriving(app: Any, address: str) -> None:
    """``/ws`` after accept: raises ``ProtocolViolation`` (4029) when this client
    address already has its cap of sockets that have not authenticated yet; otherwise
    the socket counts until ``ws_arrived``."""
    if not edge(app).arriving(address):
        raise ProtocolViolation(CloseCode.TOO_MANY, "too many sockets waiting to authenticate")


def ws_arrived(app: Any, address: str) -> None:
    """``/ws`` once the auth phase is over, whatever its outcome (once per
    ``ws_arriving`` that went through)."""
    edge(app).arrived(address)


def user_sockets_full(app: Any, who: User) -> bool:
    """True when ``who`` already has the cap of sockets and streams in this process
    (joined or joining)."""
    parts = parts_of(app)
    cap = parts.settings.max_sockets_per_user
    if not cap:
        return False
    return parts.hub.sockets_of(who.tenant, who.id) >= cap


def ws_admit(app: Any, who: User) -> None:
    """``/ws`` right after the token is verified: raises ``ProtocolViolation`` (4029)
    when the user has too many sockets open."""
    if user_sockets_full(app, who):
        raise ProtocolViolation(CloseCode.TOO_MANY, "too many sockets for this user")


def stream_admit(request: Request, who: User) -> None:
    """``/events`` right after the token is verified: 429 when the user has too many
    sockets and streams open."""
    if user_sockets_full(request.app, who):
        exc = TooManyRequests(
            "too many open sockets and streams for this user", code="too_many_sockets"
        )
        exc.headers["Retry-After"] = str(SOCKET_RETRY_AFTER_S)
        raise exc


def message_meter(app: Any) -> MessageMeter:
    """A new socket's message counter (``TASKBELL_WS_MESSAGE_RATE``)."""
    return MessageMeter(edge(app).settings.ws_message_rate)


# -------------------------------------------------------------------- what the gate reads

# Paths whose calls are rate limited: the API (and the event stream's short alias).
LIMITED_PREFIXES = ("/api/", "/events")
# Where a credential may come in the query string instead (EventSource, links).
QUERY_TOKEN_PATHS = ("/events", "/api/v1/events", "/api/v1/tasks/")


def credential(scope: Scope) -> str | None:
    """The bearer credential of an HTTP call (header, else ``?token=`` where the API
    accepts one), or None."""
    authorization = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
    return credential_from(authorization, scope.get("path", ""), scope.get("query_string"))


def credential_from(authorization: bytes | None, path: str, query: bytes | None) -> str | None:
    """``credential`` from the parts of a call: its first Authorization header (None:
    none), its path and its query string."""
    if authorization is not None:
        scheme, _, rest = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return rest.strip() or None
    if query and path.startswith(QUERY_TOKEN_PATHS):
        tokens = parse_qs(query.decode("latin-1")).get("token")
        return tokens[0] if tokens else None
    return None
