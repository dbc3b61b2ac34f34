"""Configuration, read once from the environment.

This module is the only reader of ``os.environ`` in the server. ``Settings.from_env``
builds an immutable value that ``create_app`` receives; everything else gets its
configuration from there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from server.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///taskbell.db"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def normalize_database_url(url: str) -> str:
    """Accept the usual spellings and return an async SQLAlchemy URL."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


@dataclass(frozen=True)
class Settings:
    """Every knob of a Taskbell process. Build with ``from_env`` or directly in tests."""

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret: str = ""
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment. Raises ``ConfigError`` on unsafe or malformed values."""
        env = os.environ if env is None else env
        demo = _flag(env.get("TASKBELL_DEMO"))
        secret = env.get("TASKBELL_SECRET", "")
        keys = frozenset(
            k.strip() for k in env.get("TASKBELL_PRODUCER_KEYS", "").split(",") if k.strip()
        )
        made_up: list[str] = []
        if demo:
            if not secret:
                secret = secrets.token_urlsafe(32)
                made_up.append("TASKBELL_SECRET")
            if not keys:
                keys = frozenset({"demo-producer-key"})
                made_up.append("TASKBELL_PRODUCER_KEYS")
        settings = cls(
            host=env.get("HOST", "127.0.0.1"),
            port=_int(env, "PORT", 8000),
            database_url=normalize_database_url(env.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            redis_url=env.get("REDIS_URL") or None,
            secret=secret,
            producer_keys=keys,
            demo=demo,
            made_up=tuple(made_up),
            auto_migrate=not _flag(env.get("TASKBELL_NO_MIGRATE")),
            send_queue_size=_int(env, "TASKBELL_SEND_QUEUE", 1024),
            replay_limit=_int(env, "TASKBELL_REPLAY_LIMIT", 1000),
            sweep_interval_s=_float(env, "TASKBELL_SWEEP_SECONDS", 5.0),
            timer_interval_s=_float(env, "TASKBELL_TIMER_SECONDS", 0.25),
            token_ttl_s=_int(env, "TASKBELL_TOKEN_TTL", 12 * 3600),
            log_level=env.get("LOG_LEVEL", "info").lower(),
            record_url=env.get("TASKBELL_RECORD_URL") or "/#/records/{entity}/{id}",
            default_task_url=env.get("TASKBELL_DEFAULT_TASK_URL") or "/#/activities",
            webhook_allow_private=_flag(env.get("TASKBELL_WEBHOOK_ALLOW_PRIVATE")),
            push_allow_private=_flag(env.get("TASKBELL_PUSH_ALLOW_PRIVATE")),
            webhook_timeout_s=_float(env, "TASKBELL_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            webhook_retry_base_s=_float(env, "TASKBELL_WEBHOOK_RETRY_SECONDS", 5.0),
            webhook_retry_cap_s=_float(env, "TASKBELL_WEBHOOK_RETRY_CAP_SECONDS", 4 * 3600.0),
            webhook_max_age_s=_float(env, "TASKBELL_WEBHOOK_MAX_AGE_SECONDS", 24 * 3600.0),
            outbox_poll_s=_float(env, "TASKBELL_OUTBOX_POLL_SECONDS", 1.0),
            outbox_lease_s=_float(env, "TASKBELL_OUTBOX_LEASE_SECONDS", 60.0),
            vapid_private_key=env.get("TASKBELL_VAPID_PRIVATE_KEY", "").strip(),
            vapid_public_key=env.get("TASKBELL_VAPID_PUBLIC_KEY", "").strip(),
            vapid_subject=env.get("TASKBELL_VAPID_SUBJECT", "").strip(),
            sse_heartbeat_s=_float(env, "TASKBELL_SSE_HEARTBEAT_SECONDS", 15.0),
            heartbeat_s=_float(env, "TASKBELL_HEARTBEAT_SECONDS", 25.0),
        )
        # Limits and timeouts (server/limits.py, server/guard.py); 0 turns one off.
        from dataclasses import replace

        limits: dict[str, float] = {
            "TASKBELL_RATE_PRODUCER": _float(env, "TASKBELL_RATE_PRODUCER", 0.0),
            "TASKBELL_RATE_USER": _float(env, "TASKBELL_RATE_USER", 20.0),
            "TASKBELL_MAX_SOCKETS_PER_USER": _int(env, "TASKBELL_MAX_SOCKETS_PER_USER", 20),
            "TASKBELL_MAX_PENDING_SOCKETS_PER_ADDRESS": _int(
                env, "TASKBELL_MAX_PENDING_SOCKETS_PER_ADDRESS", 50
            ),
            "TASKBELL_WS_MESSAGE_RATE": _float(env, "TASKBELL_WS_MESSAGE_RATE", 20.0),
            "TASKBELL_HEADER_TIMEOUT_SECONDS": _float(env, "TASKBELL_HEADER_TIMEOUT_SECONDS", 10.0),
            "TASKBELL_BODY_TIMEOUT_SECONDS": _float(env, "TASKBELL_BODY_TIMEOUT_SECONDS", 10.0),
        }
        for name, value in limits.items():
            if not 0 <= value < float("inf"):
                raise ConfigError(f"{name} must be 0 (off) or a positive number, got {value}")
        settings = replace(
            settings,
            rate_producer=limits["TASKBELL_RATE_PRODUCER"],
            rate_user=limits["TASKBELL_RATE_USER"],
            max_sockets_per_user=int(limits["TASKBELL_MAX_SOCKETS_PER_USER"]),
            max_pending_sockets_per_address=int(limits["TASKBELL_MAX_PENDING_SOCKETS_PER_ADDRESS"]),
            ws_message_rate=limits["TASKBELL_WS_MESSAGE_RATE"],
            header_timeout_s=limits["TASKBELL_HEADER_TIMEOUT_SECONDS"],
            body_timeout_s=limits["TASKBELL_BODY_TIMEOUT_SECONDS"],
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse unsafe production defaults outside demo mode."""
        if self.vapid_private_key and not self.vapid_subject.startswith(("mailto:", "https:")):
            raise ConfigError(
                "TASKBELL_VAPID_SUBJECT must be a mailto: or https: URL when "
                "TASKBELL_VAPID_PRIVATE_KEY is set (push services contact it)"
            )
        if self.demo:
            return
        if len(self.secret) < 32:
            raise ConfigError(
                "TASKBELL_SECRET is missing or shorter than 32 characters; "
                "set it, or run with TASKBELL_DEMO=1 for a throwaway demo"
            )
        if not self.producer_keys:
            raise ConfigError("TASKBELL_PRODUCER_KEYS is empty; set at least one producer key")
