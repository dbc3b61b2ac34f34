"""People's Web Push subscriptions, in SQL: one row per browser push endpoint, owned by
whoever registered it (see ``Subscriptions.upsert`` for who may register it again).

A person is a (tenant, user id) pair: the same user id in two tenants is two people, with
their own subscriptions. A subscription's queued pushes (outbox rows) carry its tenant."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.clock import as_utc, now_utc
from server.db import Engines
from server.delivery.queue import RowStatus, new_id
from server.delivery.tables import outbox_t, subscription_t
from server.delivery.webpush.keys import b64url_decode
from server.delivery.wire import PushSubscriptionBody, SubscriptionJSON
from server.errors import Conflict, NotFound
from server.feeds import per_tenant
from server.wire import iso

# Built once with bound parameters (the push hook reads it in every write transaction
# that touches a person's feed; building a statement costs more than running it).
_OF_OWNERS = select(subscription_t).where(
    and_(
        subscription_t.c.tenant == bindparam("tenant"),
        subscription_t.c.owner.in_(bindparam("owners", expanding=True)),
    )
)


@dataclass(frozen=True, slots=True)
class Subscription:
    tenant: str
    id: str
    owner: str
    endpoint: str
    p256dh: str
    auth: str
    created_at: datetime
    locale: str | None = None  # the registering token's ``locale`` claim

    def to_json(self) -> SubscriptionJSON:
        return {"id": self.id, "endpoint": self.endpoint, "created_at": iso(self.created_at) or ""}

    def info(self) -> dict[str, Any]:
        """The subscription as pywebpush takes it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _subscription(row: Any) -> Subscription:
    m = row._mapping
    created = as_utc(m["created_at"])
    assert created is not None
    return Subscription(
        m["tenant"],
        m["id"],
        m["owner"],
        m["endpoint"],
        m["p256dh"],
        m["auth"],
        created,
        m["locale"],
    )


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

    async def upsert(
        self, tenant: str, owner: str, body: PushSubscriptionBody, locale: str | None = None
    ) -> tuple[Subscription, bool]:
        """Store a browser's subscription for ``owner`` of ``tenant``; True when it is
        new to them. ``locale`` (the token's claim) is the language of its pushes; every
        registration updates it, so a person who changed language gets the new one the
        next time their panel starts.

        A push endpoint is one browser profile's, and its row belongs to whoever
        registered it. The same owner registering it again updates the keys. Another
        owner (someone else, or the same user id in another tenant) may take it over
        only with the same keys (the same browser, where another person logged in):
        knowing an endpoint URL is not enough, so different keys are ``Conflict``
        (``subscription_taken``) and the row stays untouched. A takeover moves the row
        to the new owner's tenant and drops the pushes still queued for the old one."""
        try:
            return await self._upsert(tenant, owner, body, locale)
        except IntegrityError:
            # Another registration of the endpoint committed between the look and the
            # insert (the unique endpoint_hash refused ours): the row exists now, and
            # the rules for an existing row decide.
            return await self._upsert(tenant, owner, body, locale)

    async def _upsert(
        self, tenant: str, owner: str, body: PushSubscriptionBody, locale: str | None
    ) -> tuple[Subscription, bool]:
        digest = endpoint_hash(body.endpoint)
        now = now_utc()
        async with self.engines.writer.begin() as conn:
            query = select(subscription_t).where(subscription_t.c.endpoint_hash == digest)
            if not self.engines.is_sqlite:
                query = query.with_for_update()
            row = (await conn.execute(query)).first()
            values = {
                "tenant": tenant,
                "owner": owner,
                "p256dh": body.keys.p256dh,
                "auth": body.keys.auth,
                "locale": locale,
            }
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
                created = (row.tenant, row.owner) != (tenant, owner)
                if created and not same_keys(row, body):
                    raise Conflict(
                        "this push endpoint is registered by someone else",
                        code="subscription_taken",
                    )
                await conn.execute(
                    update(subscription_t).where(subscription_t.c.id == sub_id).values(values)
                )
                if created:  # the previous owner's queued pushes are not for the new one
                    await self._drop_pending(conn, row.tenant, sub_id, "subscription moved")
            got = (
                await conn.execute(select(subscription_t).where(subscription_t.c.id == sub_id))
            ).one()
        return _subscription(got), created

    async def of(self, tenant: str, owner: str) -> list[Subscription]:
        async with self.engines.reader.connect() as conn:
            rows = await conn.execute(
                select(subscription_t)
                .where(and_(subscription_t.c.tenant == tenant, subscription_t.c.owner == owner))
                .order_by(subscription_t.c.created_at, subscription_t.c.id)
            )
        return [_subscription(r) for r in rows]

    async def find(self, tenant: str, sub_id: str) -> Subscription | None:
        """The subscription while it is still ``tenant``'s (a queued push of a row that
        moved to another tenant finds nothing)."""
        async with self.engines.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(subscription_t).where(
                        and_(subscription_t.c.tenant == tenant, subscription_t.c.id == sub_id)
                    )
                )
            ).first()
        return _subscription(row) if row else None

    async def delete(self, tenant: str, owner: str, sub_id: str) -> None:
        """Delete one of ``owner``'s subscriptions; another owner's (or another
        tenant's) is ``NotFound``, like a missing one."""
        async with self.engines.writer.begin() as conn:
            res = await conn.execute(
                delete(subscription_t).where(
                    and_(
                        subscription_t.c.tenant == tenant,
                        subscription_t.c.id == sub_id,
                        subscription_t.c.owner == owner,
                    )
                )
            )
            if not res.rowcount:
                raise NotFound(
                    f"push subscription {sub_id[:50]!r} not found", code="subscription_not_found"
                )
            await self._drop_pending(conn, tenant, sub_id)

    async def remove(self, sub: Subscription) -> None:
        """Delete a subscription the push service said is gone."""
        async with self.engines.writer.begin() as conn:
            await conn.execute(
                delete(subscription_t).where(
                    and_(subscription_t.c.tenant == sub.tenant, subscription_t.c.id == sub.id)
                )
            )
            await self._drop_pending(conn, sub.tenant, sub.id)

    async def _drop_pending(
        self, conn: AsyncConnection, tenant: str, sub_id: str, why: str = "subscription removed"
    ) -> None:
        await conn.execute(
            update(outbox_t)
            .where(
                and_(
                    outbox_t.c.tenant == tenant,
                    outbox_t.c.target == sub_id,
                    outbox_t.c.status == RowStatus.PENDING.value,
                )
            )
            .values(status=RowStatus.SUPERSEDED.value, last_error=why)
        )

    async def of_people(
        self, conn: AsyncConnection, people: Iterable[tuple[str, str]]
    ) -> list[Subscription]:
        """The subscriptions of ``(tenant, owner)`` pairs, read on ``conn``."""
        found: list[Subscription] = []
        for tenant, owners in per_tenant(people):  # (one tenant, most often)
            rows = await direct.execute(conn, _OF_OWNERS, {"tenant": tenant, "owners": owners})
            found.extend(_subscription(r) for r in rows)
        return found
