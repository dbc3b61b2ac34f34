"""Configuration, read once from the environment.

This module is the only reader of ``os.environ`` in the server. ``Settings.from_env``
builds an immutable value that ``create_app`` receives; everything else gets its
configuration from there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from server.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///taskbell.db"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def normalize_database_url(url: str) -> str:
    """Accept the usual spellings and return an async SQLAlchemy URL."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


@dataclass(frozen=True)
class Settings:
    """Every knob of a Taskbell process. Build with ``from_env`` or directly in tests
    (``dataclasses.replace`` to change a few). Each default is written here, once."""

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret: str = ""  # signs user tokens (the first of TASKBELL_SECRET)
    previous_secrets: tuple[str, ...] = ()  # the others: still accepted, never used to sign
    producer_keys: frozenset[str] = field(default_factory=frozenset)
    demo: bool = False
    made_up: tuple[str, ...] = ()  # what demo mode invented because it was not set
    demo_users: tuple[str, ...] = ("alice", "bob", "carol")
    auto_migrate: bool = True
    max_body_bytes: int = 64 * 1024
    max_ws_message_bytes: int = 64 * 1024
    auth_timeout_s: float = 5.0
    send_queue_size: int = 1024
    replay_limit: int = 1000
    sweep_interval_s: float = 5.0
    timer_interval_s: float = 0.25
    token_ttl_s: int = 12 * 3600
    token_max_lifetime_s: int = 24 * 3600  # exp - iat of any accepted token; 0 = no limit
    token_audience: str = ""  # when set, tokens must carry this aud
    token_issuer: str = ""  # when set, tokens must carry this iss
    token_leeway_s: int = 30  # clock difference tolerated on exp, iat and nbf
    allowed_origins: frozenset[str] = field(default_factory=frozenset)  # empty: any
    frame_ancestors: str = "'self'"  # who may frame the panel (CSP frame-ancestors)
    log_level: str = "info"
    record_url: str = "/#/records/{entity}/{id}"
    default_task_url: str = "/#/activities"
    # Webhooks and Web Push (server/delivery).
    webhook_allow_private: bool = False
    push_allow_private: bool = False
    webhook_timeout_s: float = 10.0
    webhook_retry_base_s: float = 5.0
    webhook_retry_cap_s: float = 4 * 3600.0
    webhook_max_age_s: float = 24 * 3600.0
    push_max_age_s: float = 3600.0
    push_ttl_s: int = 12 * 3600
    outbox_poll_s: float = 1.0
    outbox_lease_s: float = 60.0
    vapid_private_key: str = ""
    vapid_public_key: str = ""
    vapid_subject: str = ""
    sse_heartbeat_s: float = 15.0
    heartbeat_s: float = 25.0
    # Limits per caller and slow-client timeouts (server/limits.py, server/guard.py);
    # 0 turns one off. Counted per process, not across instances.
    rate_producer: float = 0.0  # requests per second per producer key (burst: twice)
    rate_user: float = 20.0  # requests per second per user (burst: twice)
    max_sockets_per_user: int = 20  # /ws sockets and /events streams, per user
    max_pending_sockets_per_address: int = 50  # sockets not yet authenticated
    ws_message_rate: float = 20.0  # messages per second per socket after auth (burst: twice)
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    # Operations (server/metrics.py, server/logs.py).
    access_log: bool = True  # one log line per HTTP request (taskbell.access)
    metrics_token: str = ""  # when set, GET /metrics wants it (or a producer key)
    # Demo mode: the BPMN engine (engine/) that "Start sample process" starts instances on.
    engine_url: str = ""  # empty: the demo's made-up process instead

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret a user token may be signed with; the first one signs."""
        return (self.secret, *self.previous_secrets) if self.secret else self.previous_secrets

    @property
    def demo_routes(self) -> bool:
        """Demo routes run only when demo mode made up both the secret and the producer
        keys: with a real secret or real keys configured, handing out tokens or writing
        without a key would give the real server away."""
        return (
            self.demo
            and "TASKBELL_SECRET" in self.made_up
            and "TASKBELL_PRODUCER_KEYS" in self.made_up
        )

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each field's default, read from the class (so it is written only once)."""
        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment. Raises ``ConfigError`` on unsafe or malformed values."""
        env = os.environ if env is None else env
        values = cls.defaults()
        for name, (attr, parse) in _ENV.items():
            raw = env.get(name)
            if raw is not None and raw.strip() != "":
                values[attr] = parse(name, raw)
        if _flag(env.get("TASKBELL_NO_MIGRATE")):
            values["auto_migrate"] = False
        secrets_given = _list(env.get("TASKBELL_SECRET", ""))
        made_up: list[str] = []
        if values["demo"]:
            if not secrets_given:
                secrets_given = (secrets.token_urlsafe(32),)
                made_up.append("TASKBELL_SECRET")
            if not values["producer_keys"]:
                values["producer_keys"] = frozenset({"demo-producer-key"})
                made_up.append("TASKBELL_PRODUCER_KEYS")
        if secrets_given:
            values["secret"], values["previous_secrets"] = secrets_given[0], secrets_given[1:]
        values["made_up"] = tuple(made_up)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse unsafe production defaults outside demo mode, and short secrets always
        (demo mode only makes up what is missing; what is given must be sound)."""
        if self.vapid_private_key and not self.vapid_subject.startswith(("mailto:", "https:")):
            raise ConfigError(
                "TASKBELL_VAPID_SUBJECT must be a mailto: or https: URL when "
                "TASKBELL_VAPID_PRIVATE_KEY is set (push services contact it)"
            )
        if self.token_max_lifetime_s < 0:
            raise ConfigError("TASKBELL_TOKEN_MAX_LIFETIME must be 0 (no limit) or more")
        if 0 < self.token_max_lifetime_s < self.token_ttl_s:
            raise ConfigError(
                "TASKBELL_TOKEN_TTL is longer than TASKBELL_TOKEN_MAX_LIFETIME: "
                "the tokens this server mints would be refused"
            )
        if any(o == "null" or "://" not in o or o.endswith("/") for o in self.allowed_origins):
            raise ConfigError(
                "TASKBELL_ALLOWED_ORIGINS takes exact origins such as https://app.example.com "
                "(scheme, host and port if not the default; no path, no trailing /)"
            )
        if not self.frame_ancestors or any(
            c in ";,\r\n" or not c.isprintable() for c in self.frame_ancestors
        ):
            raise ConfigError(
                "TASKBELL_FRAME_ANCESTORS takes CSP sources separated by spaces, "
                "such as 'self' https://crm.example.com"
            )
        if not (self.heartbeat_s == 0 or 0.1 <= self.heartbeat_s <= 30):
            raise ConfigError(
                "TASKBELL_HEARTBEAT_SECONDS must be from 0.1 to 30 (clients count on a "
                "heartbeat at least every 30 s), or 0 for none"
            )
        if self.demo and not self.secret:
            return
        if not self.secret or any(len(s) < 32 for s in self.secrets):
            raise ConfigError(
                "TASKBELL_SECRET is missing or one of its secrets is shorter than 32 "
                "characters; set it, or run with TASKBELL_DEMO=1 for a throwaway demo"
            )
        if not self.producer_keys and not self.demo:
            raise ConfigError("TASKBELL_PRODUCER_KEYS is empty; set at least one producer key")


def _list(raw: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _whole(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _on(name: str, raw: str) -> bool:
    return _flag(raw)


def _limit(name: str, raw: str) -> float:
    value = _number(name, raw)
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be 0 (off) or a positive number, got {raw!r}")
    return value


def _whole_limit(name: str, raw: str) -> int:
    value = _whole(name, raw)
    if value < 0:
        raise ConfigError(f"{name} must be 0 (off) or a positive number, got {raw!r}")
    return value


def _http_url(name: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or url.endswith("://"):
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return url


def _set(name: str, raw: str) -> frozenset[str]:
    return frozenset(_list(raw))


# Environment variable → (field, parser). A variable that is unset or blank leaves the
# field at its default. TASKBELL_SECRET and TASKBELL_NO_MIGRATE are read in from_env.
_ENV: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "HOST": ("host", lambda n, raw: raw),
    "PORT": ("port", _whole),
    "DATABASE_URL": ("database_url", lambda n, raw: normalize_database_url(raw)),
    "REDIS_URL": ("redis_url", lambda n, raw: raw),
    "TASKBELL_PRODUCER_KEYS": ("producer_keys", _set),
    "TASKBELL_DEMO": ("demo", _on),
    "TASKBELL_SEND_QUEUE": ("send_queue_size", _whole),
    "TASKBELL_REPLAY_LIMIT": ("replay_limit", _whole),
    "TASKBELL_SWEEP_SECONDS": ("sweep_interval_s", _number),
    "TASKBELL_TIMER_SECONDS": ("timer_interval_s", _number),
    "TASKBELL_TOKEN_TTL": ("token_ttl_s", _whole),
    "TASKBELL_TOKEN_MAX_LIFETIME": ("token_max_lifetime_s", _whole),
    "TASKBELL_TOKEN_AUDIENCE": ("token_audience", _text),
    "TASKBELL_TOKEN_ISSUER": ("token_issuer", _text),
    "TASKBELL_ALLOWED_ORIGINS": ("allowed_origins", _set),
    "TASKBELL_FRAME_ANCESTORS": ("frame_ancestors", _text),
    "LOG_LEVEL": ("log_level", lambda n, raw: raw.strip().lower()),
    "TASKBELL_RECORD_URL": ("record_url", lambda n, raw: raw),
    "TASKBELL_DEFAULT_TASK_URL": ("default_task_url", lambda n, raw: raw),
    "TASKBELL_WEBHOOK_ALLOW_PRIVATE": ("webhook_allow_private", _on),
    "TASKBELL_PUSH_ALLOW_PRIVATE": ("push_allow_private", _on),
    "TASKBELL_WEBHOOK_TIMEOUT_SECONDS": ("webhook_timeout_s", _number),
    "TASKBELL_WEBHOOK_RETRY_SECONDS": ("webhook_retry_base_s", _number),
    "TASKBELL_WEBHOOK_RETRY_CAP_SECONDS": ("webhook_retry_cap_s", _number),
    "TASKBELL_WEBHOOK_MAX_AGE_SECONDS": ("webhook_max_age_s", _number),
    "TASKBELL_OUTBOX_POLL_SECONDS": ("outbox_poll_s", _number),
    "TASKBELL_OUTBOX_LEASE_SECONDS": ("outbox_lease_s", _number),
    "TASKBELL_VAPID_PRIVATE_KEY": ("vapid_private_key", _text),
    "TASKBELL_VAPID_PUBLIC_KEY": ("vapid_public_key", _text),
    "TASKBELL_VAPID_SUBJECT": ("vapid_subject", _text),
    "TASKBELL_SSE_HEARTBEAT_SECONDS": ("sse_heartbeat_s", _number),
    "TASKBELL_HEARTBEAT_SECONDS": ("heartbeat_s", _number),
    # Limits and timeouts (server/limits.py, server/guard.py); 0 turns one off.
    "TASKBELL_RATE_PRODUCER": ("rate_producer", _limit),
    "TASKBELL_RATE_USER": ("rate_user", _limit),
    "TASKBELL_MAX_SOCKETS_PER_USER": ("max_sockets_per_user", _whole_limit),
    "TASKBELL_MAX_PENDING_SOCKETS_PER_ADDRESS": ("max_pending_sockets_per_address", _whole_limit),
    "TASKBELL_WS_MESSAGE_RATE": ("ws_message_rate", _limit),
    "TASKBELL_HEADER_TIMEOUT_SECONDS": ("header_timeout_s", _limit),
    "TASKBELL_BODY_TIMEOUT_SECONDS": ("body_timeout_s", _limit),
    "TASKBELL_ACCESS_LOG": ("access_log", _on),
    "TASKBELL_METRICS_TOKEN": ("metrics_token", _text),
    "TASKBELL_ENGINE_URL": ("engine_url", _http_url),
}
