"""Web Push for people with no tab open: subscriptions, payloads, and sending.

Encryption (RFC 8291, aes128gcm) and VAPID signing (RFC 8292) are pywebpush's and
py-vapid's. Every change of an owner's feed becomes one push to each of the owner's
subscriptions, through the outbox (so a push survives a restart):

- ``task.added`` shows a notification tagged with the task id (Urgency: high);
- ``task.updated`` replaces it if it is still shown;
- ``task.removed`` (completed, canceled, postponed, reassigned away) closes it.

A newer push for the same task supersedes one still queued, and carries a ``Topic``
header derived from the task id, so a push service holding an undelivered "added"
replaces it with the "removed". A subscription the push service answers with 404 or
410 is deleted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import aiohttp
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async
from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.changes import Envelope
from server.clock import as_utc, now_utc
from server.db import Engines
from server.errors import ConfigError, Conflict, NotFound
from server.models_push import outbox_t, subscription_t
from server.ops import TaskOp
from server.outbox import Channel, Message, Result, RetryPolicy, RowStatus, Verdict, enqueue, new_id
from server.settings import Settings
from server.transitions import Outcome
from server.wire import EventMessage, dumps, iso
from server.wire_push import PushPayload, PushSubscriptionBody, SubscriptionJSON

log = logging.getLogger("taskbell.webpush")

TITLE_MAX = 200
URL_MAX = 1000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class VapidKeys:
    """The server's VAPID identity: the signing key, the public key the browser passes
    to ``pushManager.subscribe`` as ``applicationServerKey``, and the contact subject."""

    signer: Any  # py_vapid.Vapid (untyped)
    public_key: str
    subject: str

    @classmethod
    def from_settings(cls, settings: Settings) -> VapidKeys | None:
        """None when Web Push is not configured. Raises ``ConfigError`` for a bad key."""
        if not settings.vapid_private_key:
            return None
        try:
            signer = Vapid.from_string(settings.vapid_private_key)
            raw = signer.public_key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        except Exception:
            raise ConfigError(
                "TASKBELL_VAPID_PRIVATE_KEY is not a P-256 private key "
                "(make one with: python -m server vapid)"
            ) from None
        public = b64url(raw)
        if settings.vapid_public_key and settings.vapid_public_key.rstrip("=") != public:
            raise ConfigError("TASKBELL_VAPID_PUBLIC_KEY does not match the private key")
        return cls(signer, public, settings.vapid_subject)

    @staticmethod
    def generate() -> tuple[str, str]:
        """A new key pair as (private, public), both base64url without padding."""
        key = ec.generate_private_key(ec.SECP256R1())
        private = key.private_numbers().private_value.to_bytes(32, "big")
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(private), b64url(public)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    owner: str
    endpoint: str
    p256dh: str
    auth: str
    created_at: datetime

    def to_json(self) -> SubscriptionJSON:
        return {"id": self.id, "endpoint": self.endpoint, "created_at": iso(self.created_at) or ""}

    def info(self) -> dict[str, Any]:
        """The subscription as pywebpush takes it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _subscription(row: Any) -> Subscription:
    m = row._mapping
    created = as_utc(m["created_at"])
    assert created is not None
    return Subscription(m["id"], m["owner"], m["endpoint"], m["p256dh"], m["auth"], created)


def endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()


def check_keys(body: PushSubscriptionBody) -> None:
    """Raises ``ValueError`` unless the keys are a P-256 point and a 16-byte secret."""
    point = b64url_decode(body.keys.p256dh)
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    if len(b64url_decode(body.keys.auth)) != 16:
        raise ValueError("auth must be 16 bytes")


def same_keys(row: Any, body: PushSubscriptionBody) -> bool:
    """Whether a stored subscription has the keys of ``body`` (the browser's public key
    and auth secret, compared as bytes and in constant time)."""
    stored = b64url_decode(row.p256dh) + b64url_decode(row.auth)
    given = b64url_decode(body.keys.p256dh) + b64url_decode(body.keys.auth)
    return hmac.compare_digest(stored, given)


class Subscriptions:
    """The push subscriptions of every owner, in SQL."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def upsert(self, owner: str, body: PushSubscriptionBody) -> tuple[Subscription, bool]:
        """Store a browser's subscription for ``owner``; True when it is new to them.

        A push endpoint is one browser profile's, and its row belongs to whoever
        registered it. The same owner registering it again updates the keys. Another
        owner may take it over only with the same keys (the same browser, where another
        person logged in): knowing an endpoint URL is not enough, so different keys are
        ``Conflict`` (``subscription_taken``) and the row stays untouched."""
        digest = endpoint_hash(body.endpoint)
        now = now_utc()
        async with self.engines.writer.begin() as conn:
            query = select(subscription_t).where(subscription_t.c.endpoint_hash == digest)
            if not self.engines.is_sqlite:
                query = query.with_for_update()
            row = (await conn.execute(query)).first()
            values = {"owner": owner, "p256dh": body.keys.p256dh, "auth": body.keys.auth}
            if row is None:
                sub_id = new_id("sub")
                await conn.execute(
                    insert(subscription_t).values(
                        id=sub_id,
                        endpoint=body.endpoint,
                        endpoint_hash=digest,
                        created_at=now,
                        **values,
                    )
                )
                created = True
            else:
                sub_id = row.id
                created = row.owner != owner
                if created and not same_keys(row, body):
                    raise Conflict(
                        "this push endpoint is registered by someone else",
                        code="subscription_taken",
                    )
                await conn.execute(
                    update(subscription_t).where(subscription_t.c.id == sub_id).values(values)
                )
                if created:  # the previous owner's queued pushes are not for the new one
                    await self._drop_pending(conn, sub_id, "subscription moved")
            got = (
                await conn.execute(select(subscription_t).where(subscription_t.c.id == sub_id))
            ).one()
        return _subscription(got), created

    async def of(self, owner: str) -> list[Subscription]:
        async with self.engines.reader.connect() as conn:
            rows = await conn.execute(
                select(subscription_t)
                .where(subscription_t.c.owner == owner)
                .order_by(subscription_t.c.created_at)
            )
        return [_subscription(r) for r in rows]

    async def find(self, sub_id: str) -> Subscription | None:
        async with self.engines.reader.connect() as conn:
            row = (
                await conn.execute(select(subscription_t).where(subscription_t.c.id == sub_id))
            ).first()
        return _subscription(row) if row else None

    async def delete(self, owner: str, sub_id: str) -> None:
        """Delete one of ``owner``'s subscriptions; another owner's is ``NotFound``."""
        async with self.engines.writer.begin() as conn:
            res = await conn.execute(
                delete(subscription_t).where(
                    and_(subscription_t.c.id == sub_id, subscription_t.c.owner == owner)
                )
            )
            if not res.rowcount:
                raise NotFound(
                    f"push subscription {sub_id[:50]!r} not found", code="subscription_not_found"
                )
            await self._drop_pending(conn, sub_id)

    async def remove(self, sub_id: str) -> None:
        """Delete a subscription the push service said is gone."""
        async with self.engines.writer.begin() as conn:
            await conn.execute(delete(subscription_t).where(subscription_t.c.id == sub_id))
            await self._drop_pending(conn, sub_id)

    async def _drop_pending(
        self, conn: AsyncConnection, sub_id: str, why: str = "subscription removed"
    ) -> None:
        await conn.execute(
            update(outbox_t)
            .where(and_(outbox_t.c.target == sub_id, outbox_t.c.status == RowStatus.PENDING.value))
            .values(status=RowStatus.SUPERSEDED.value, last_error=why)
        )

    async def of_owners(self, conn: AsyncConnection, owners: Sequence[str]) -> list[Subscription]:
        rows = await conn.execute(
            select(subscription_t).where(subscription_t.c.owner.in_(sorted(set(owners))))
        )
        return [_subscription(r) for r in rows]


def push_payload(message: str) -> PushPayload:
    """The push for one feed event (the stored WebSocket message), trimmed to what a
    notification shows so it stays far below the push services' 4 KiB limit."""
    event = cast(EventMessage, orjson.loads(message))
    task = event["task"]
    url = task["url"]
    process = task["process"]
    return {
        "type": cast(Any, event["type"]),
        "seq": event["seq"],
        "count": event["count"],
        "reason": event.get("reason"),
        "task": {
            "id": task["id"],
            "title": task["title"][:TITLE_MAX],
            "status": task["status"],
            "process": process["name"] if process else None,
            "url": url if url is not None and len(url) <= URL_MAX else None,
        },
    }


def topic(task_id: str) -> str:
    """A Web Push ``Topic`` (at most 32 base64url characters) naming the task."""
    return b64url(hashlib.sha256(task_id.encode()).digest())[:32]


_SUPERSEDE = (
    update(outbox_t)
    .where(
        and_(
            outbox_t.c.target == bindparam("b_target"),
            outbox_t.c.task_id == bindparam("b_task"),
            outbox_t.c.status == RowStatus.PENDING.value,
            outbox_t.c.attempts == 0,
        )
    )
    .values(status=RowStatus.SUPERSEDED.value)
)


class PushHook:
    """Write hook (``server.writes``): queue one push per feed event and subscription
    of its owner."""

    def __init__(self, subscriptions: Subscriptions, retry: RetryPolicy) -> None:
        self.subscriptions = subscriptions
        self.retry = retry

    async def __call__(
        self,
        conn: AsyncConnection,
        changes: Sequence[tuple[TaskOp, Outcome]],
        envelopes: Sequence[Envelope],
        now: datetime,
    ) -> bool:
        if not envelopes:
            return False
        subs = await self.subscriptions.of_owners(conn, [e.owner for e in envelopes])
        if not subs:
            return False
        rows: list[tuple[str, Channel, str, str, str, str]] = []
        for env in envelopes:
            payload = push_payload(env.message)
            body = dumps(payload)
            task_id = payload["task"]["id"]
            for sub in subs:
                if sub.owner == env.owner:
                    rows.append(
                        (new_id("psh"), Channel.WEBPUSH, sub.id, payload["type"], task_id, body)
                    )
        if not rows:
            return False
        # Only the latest state of a task matters on a lock screen: one statement (run
        # for every new push) supersedes the older pushes of the same task not yet tried.
        await conn.execute(
            _SUPERSEDE, [{"b_target": target, "b_task": task} for _, _, target, _, task, _ in rows]
        )
        await enqueue(conn, rows, now, self.retry.max_age_s)
        return True


class PushSender:
    """One push per call through pywebpush; 404/410 deletes the subscription."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        vapid: VapidKeys,
        session: aiohttp.ClientSession,
        retry: RetryPolicy,
        *,
        ttl_s: int,
    ) -> None:
        self.subscriptions = subscriptions
        self.vapid = vapid
        self.session = session
        self.retry = retry
        self.ttl_s = ttl_s

    async def send(self, message: Message) -> Result:
        sub = await self.subscriptions.find(message.target)
        if sub is None:
            return Result(Verdict.FAILED, error="the subscription was removed")
        headers = {
            "Urgency": "high" if message.event_type == "task.added" else "normal",
            "Topic": topic(message.task_id),
        }
        try:
            resp = await webpush_async(
                sub.info(),
                data=message.payload,
                vapid_private_key=self.vapid.signer,
                vapid_claims={"sub": self.vapid.subject},  # a fresh dict: it gets "aud"
                ttl=self.ttl_s,
                headers=headers,
                aiohttp_session=self.session,
                timeout=self.session.timeout,
            )
        except WebPushException as exc:
            status = _status_of(exc)
            if status in (404, 410):
                await self.subscriptions.remove(sub.id)
                log.info("push subscription gone", extra={"subscription": sub.id})
                return Result(Verdict.FAILED, status=status, error="subscription gone")
            error = f"push service answered {status}"
            if status is not None and (status == 429 or status >= 500):
                return Result(Verdict.RETRY, status=status, error=error)
            return Result(Verdict.FAILED, status=status, error=error)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Result(Verdict.RETRY, error=(str(exc) or type(exc).__name__)[:300])
        return Result(Verdict.DELIVERED, status=getattr(resp, "status", None))

    async def gave_up(self, message: Message, result: Result) -> None:
        """A push that could not be delivered in time is stale: nothing to do."""


def _status_of(exc: WebPushException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status", None)
    return int(status) if isinstance(status, int) else None
