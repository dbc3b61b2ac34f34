"""Helpers for tenants, role queues and substitutions: a second tenant's producer key,
clients of either tenant, a queue task body, a substitution body, polling, and two real
server processes on one PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from server.auth import mint_token
from server.feeds import DEFAULT_TENANT
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET, Live
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import task_body

ACME = "acme"
ACME_KEY = "pk-acme-0123456"  # bound to tenant acme by the entry "acme=pk-acme-0123456"
TENANT_KEYS = frozenset({PRODUCER_KEY, f"{ACME}={ACME_KEY}"})
KEYS = {DEFAULT_TENANT: PRODUCER_KEY, ACME: ACME_KEY}

T = TypeVar("T")


def two_tenants(settings: Settings) -> Settings:
    """``settings`` with producer keys of the tenants ``default`` and ``acme``, and no
    per-user rate limit (a probe of every endpoint makes many calls as one person)."""
    return replace(settings, producer_keys=TENANT_KEYS, rate_user=0.0)


def user_token(user: str, tenant: str = DEFAULT_TENANT, ttl: int = 3600) -> str:
    return mint_token(SECRET, user, ttl, tenant=tenant)


def producer_of(base_url: str, tenant: str = DEFAULT_TENANT) -> httpx.AsyncClient:
    """A producer client of ``tenant`` (its key) against ``base_url``."""
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {KEYS[tenant]}"}, timeout=30
    )


def person_of(base_url: str, user: str, tenant: str = DEFAULT_TENANT) -> httpx.AsyncClient:
    """A client holding ``user``'s token of ``tenant``."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {user_token(user, tenant)}"},
        timeout=30,
    )


def producer(live: Live, tenant: str = DEFAULT_TENANT) -> httpx.AsyncClient:
    return producer_of(live.base_url, tenant)


def person(live: Live, user: str, tenant: str = DEFAULT_TENANT) -> httpx.AsyncClient:
    return person_of(live.base_url, user, tenant)


def queue_body(tid: str, role: str = "approvers", **kw: Any) -> dict[str, Any]:
    """A task offered to ``role`` (``owner`` null)."""
    body = task_body(tid, **kw)
    body.pop("owner")
    body["role"] = role
    return body


def at(seconds: float) -> str:
    """ISO-8601 UTC time ``seconds`` from now."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def substitution_body(
    sid: str = "s-1",
    user: str = "alice",
    substitute: str = "bob",
    starts: float = -60,
    ends: float = 3600,
    **kw: Any,
) -> dict[str, Any]:
    """A substitution from ``starts`` to ``ends`` seconds from now."""
    body: dict[str, Any] = {
        "id": sid,
        "user": user,
        "substitute": substitute,
        "starts_at": at(starts),
        "ends_at": at(ends),
    }
    body.update(kw)
    return body


async def until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float = 10.0,
    every: float = 0.1,
) -> T:
    """Call ``probe`` every ``every`` s until ``done`` holds for its answer; that answer.
    Raises ``AssertionError`` (with the last answer) when ``timeout`` passes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"not reached within {timeout} s; last: {value!r}")
        await asyncio.sleep(every)


async def feed_ids(client: httpx.AsyncClient, status: str = "running") -> list[str]:
    """The ids in the caller's ``/me/tasks?feeds=all`` (sorted)."""
    resp = await client.get("/api/v1/me/tasks", params={"feeds": "all", "status": status})
    assert resp.status_code == 200, resp.text
    return sorted(t["id"] for t in resp.json()["tasks"])


async def feed_counts(client: httpx.AsyncClient) -> dict[str, int]:
    """``feed → count`` from the caller's ``/me/counter``, plus ``total``."""
    resp = await client.get("/api/v1/me/counter")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    counts = {f: int(p["count"]) for f, p in body["feeds"].items()}
    counts["total"] = int(body["total"])
    return counts


def cluster_env(db_url: str, redis_url: str) -> dict[str, str]:
    """Environment for ``python -m server`` with both tenants' producer keys."""
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": ",".join(sorted(TENANT_KEYS)),
        "TASKBELL_SWEEP_SECONDS": "1.0",
        "LOG_LEVEL": "warning",
    }


@contextmanager
def two_servers(
    postgres: PostgresServer, redis: RedisServer, prefix: str = "aud"
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    """Two real server processes on one new PostgreSQL database (and one Redis); yields
    them and the database's asyncpg DSN."""
    name = f"{prefix}_{random.randrange(16**8):08x}"
    db_url = postgres.create_database(name)
    env = cluster_env(db_url, redis.url)
    with ServerProcess(env) as a, ServerProcess(env) as b:
        a.wait_ready()
        b.wait_ready()
        yield a, b, postgres.dsn_for(name)
