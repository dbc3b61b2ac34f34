"""Webhook endpoints and their delivery logs, in SQL.

An endpoint belongs to the tenant of the producer key that registered it: every call
here names that tenant, and another tenant's endpoint (or delivery) is not found, exactly
like a missing one. Its deliveries (outbox rows) carry the same tenant.

An endpoint is disabled (and says why in ``disabled_reason``) when it answers 410 Gone,
or when it has failed without a single success for ``disable_after_s`` (about a day, the
length of the retry schedule). Disabling pauses its pending deliveries; re-enabling
(``PATCH {"enabled": true}``) resumes them, due at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct, paging
from server.clock import as_utc, now_utc
from server.db import Engines
from server.delivery.queue import Channel, RowStatus, new_id
from server.delivery.tables import endpoint_t, outbox_t
from server.delivery.webhooks import signing
from server.delivery.wire import DeliveryJSON, EndpointCreate, EndpointJSON, EndpointPatch
from server.errors import Conflict, NotFound
from server.wire import iso

log = logging.getLogger("taskbell.webhooks")


# Read in every write transaction (the webhook hook): built once, with bound parameters.
_ENABLED = select(endpoint_t).where(
    and_(
        endpoint_t.c.tenant.in_(bindparam("tenants", expanding=True)),
        endpoint_t.c.enabled.is_(True),
    )
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    tenant: str
    id: str
    url: str
    events: frozenset[str]
    owners: frozenset[str] | None
    description: str
    secret: str
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> EndpointJSON:
        return {
            "id": self.id,
            "url": self.url,
            "events": sorted(self.events),
            "owners": sorted(self.owners) if self.owners is not None else None,
            "description": self.description,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": iso(self.disabled_at),
            "created_at": iso(self.created_at) or "",
            "updated_at": iso(self.updated_at) or "",
        }


def _endpoint(row: Any) -> Endpoint:
    m = row._mapping
    owners = orjson.loads(m["owners"]) if m["owners"] is not None else None
    return Endpoint(
        tenant=m["tenant"],
        id=m["id"],
        url=m["url"],
        events=frozenset(orjson.loads(m["event_types"])),
        owners=frozenset(owners) if owners is not None else None,
        description=m["description"],
        secret=m["secret"],
        enabled=bool(m["enabled"]),
        disabled_reason=m["disabled_reason"],
        disabled_at=as_utc(m["disabled_at"]),
        failing_since=as_utc(m["failing_since"]),
        created_at=as_utc(m["created_at"]) or now_utc(),
        updated_at=as_utc(m["updated_at"]) or now_utc(),
    )


def delivery_json(row: Any) -> DeliveryJSON:
    m = row._mapping
    pending = m["status"] == RowStatus.PENDING.value
    return {
        "id": m["id"],
        "event_type": m["event_type"],
        "task_id": m["task_id"],
        "status": m["status"],
        "attempts": int(m["attempts"]),
        "created_at": iso(as_utc(m["created_at"])) or "",
        "last_attempt_at": iso(as_utc(m["last_attempt_at"])),
        "next_attempt_at": iso(as_utc(m["next_attempt_at"])) if pending else None,
        "delivered_at": iso(as_utc(m["delivered_at"])),
        "last_status": m["last_status"],
        "last_error": m["last_error"],
        "payload": orjson.loads(m["payload"]),
    }


def _dump(values: list[str] | None) -> str | None:
    return None if values is None else orjson.dumps(sorted(set(values))).decode()


def _missing(endpoint_id: str) -> NotFound:
    """What a missing endpoint, or another tenant's, answers (the same either way)."""
    return NotFound(f"webhook endpoint {endpoint_id[:50]!r} not found", code="not_found")


def _missing_delivery(delivery_id: str) -> NotFound:
    return NotFound(f"delivery {delivery_id[:60]!r} not found", code="delivery_not_found")


def _one(tenant: str, endpoint_id: str) -> Any:
    """The condition selecting endpoint ``endpoint_id`` of ``tenant``."""
    return and_(endpoint_t.c.tenant == tenant, endpoint_t.c.id == endpoint_id)


def _its(tenant: str, endpoint_id: str) -> Any:
    """The condition selecting the webhook deliveries of that endpoint."""
    return and_(
        outbox_t.c.tenant == tenant,
        outbox_t.c.target == endpoint_id,
        outbox_t.c.channel == Channel.WEBHOOK.value,
    )


class Endpoints:
    """CRUD of endpoints, their delivery logs, and their health."""

    def __init__(self, engines: Engines, *, disable_after_s: float, max_age_s: float) -> None:
        self.engines = engines
        self.disable_after_s = disable_after_s
        self.max_age_s = max_age_s

    async def create(self, tenant: str, body: EndpointCreate) -> Endpoint:
        now = now_utc()
        values = {
            "tenant": tenant,
            "id": new_id("ep"),
            "url": body.url,
            "event_types": _dump(body.events),
            "owners": _dump(body.owners),
            "description": body.description,
            "secret": signing.new_secret(),
            "enabled": True,
            "created_at": now,
            "updated_at": now,
        }
        async with self.engines.writer.begin() as conn:
            await conn.execute(insert(endpoint_t).values(values))
        return await self.get(tenant, str(values["id"]))

    async def find(self, tenant: str, endpoint_id: str) -> Endpoint | None:
        async with self.engines.reader.connect() as conn:
            row = (await conn.execute(select(endpoint_t).where(_one(tenant, endpoint_id)))).first()
        return _endpoint(row) if row else None

    async def get(self, tenant: str, endpoint_id: str) -> Endpoint:
        """Raises ``NotFound`` (also for another tenant's endpoint)."""
        found = await self.find(tenant, endpoint_id)
        if found is None:
            raise _missing(endpoint_id)
        return found

    async def all(self, tenant: str) -> list[Endpoint]:
        async with self.engines.reader.connect() as conn:
            rows = await conn.execute(
                select(endpoint_t)
                .where(endpoint_t.c.tenant == tenant)
                .order_by(endpoint_t.c.created_at, endpoint_t.c.id)
            )
        return [_endpoint(r) for r in rows]

    async def enabled(self, conn: AsyncConnection, tenants: Iterable[str]) -> list[Endpoint]:
        """The enabled endpoints of ``tenants``, read on ``conn`` (inside a write
        transaction)."""
        wanted = sorted(set(tenants))
        if not wanted:
            return []
        rows = await direct.execute(conn, _ENABLED, {"tenants": wanted})
        return [_endpoint(r) for r in rows]

    async def patch(self, tenant: str, endpoint_id: str, body: EndpointPatch) -> Endpoint:
        fields = body.model_fields_set
        now = now_utc()
        values: dict[str, Any] = {"updated_at": now}
        if "url" in fields and body.url is not None:
            values["url"] = body.url
        if "events" in fields and body.events is not None:
            values["event_types"] = _dump(body.events)
        if "owners" in fields:
            values["owners"] = _dump(body.owners)
        if "description" in fields and body.description is not None:
            values["description"] = body.description
        async with self.engines.writer.begin() as conn:
            res = await conn.execute(
                update(endpoint_t).where(_one(tenant, endpoint_id)).values(values)
            )
            if not res.rowcount:
                raise _missing(endpoint_id)
            if body.enabled is True:
                await self._enable(conn, tenant, endpoint_id, now)
            elif body.enabled is False:
                await self._disable(conn, tenant, endpoint_id, "disabled by a producer", now)
        return await self.get(tenant, endpoint_id)

    async def delete(self, tenant: str, endpoint_id: str) -> None:
        """Delete the endpoint and its deliveries (pending ones are never sent)."""
        async with self.engines.writer.begin() as conn:
            res = await conn.execute(delete(endpoint_t).where(_one(tenant, endpoint_id)))
            if not res.rowcount:
                raise _missing(endpoint_id)
            await conn.execute(delete(outbox_t).where(_its(tenant, endpoint_id)))

    async def _enable(
        self, conn: AsyncConnection, tenant: str, endpoint_id: str, now: datetime
    ) -> None:
        await conn.execute(
            update(endpoint_t)
            .where(_one(tenant, endpoint_id))
            .values(enabled=True, disabled_reason=None, disabled_at=None, failing_since=None)
        )
        await conn.execute(
            update(outbox_t)
            .where(and_(_its(tenant, endpoint_id), outbox_t.c.status == RowStatus.PAUSED.value))
            .values(
                status=RowStatus.PENDING.value,
                next_attempt_at=now,
                expires_at=now + timedelta(seconds=self.max_age_s),
            )
        )

    async def _disable(
        self, conn: AsyncConnection, tenant: str, endpoint_id: str, reason: str, now: datetime
    ) -> None:
        await conn.execute(
            update(endpoint_t)
            .where(_one(tenant, endpoint_id))
            .values(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
        )
        await conn.execute(
            update(outbox_t)
            .where(and_(_its(tenant, endpoint_id), outbox_t.c.status == RowStatus.PENDING.value))
            .values(status=RowStatus.PAUSED.value)
        )

    async def disable(self, endpoint: Endpoint, reason: str) -> None:
        log.warning(
            "webhook endpoint disabled",
            extra={"tenant": endpoint.tenant, "endpoint": endpoint.id, "why": reason},
        )
        async with self.engines.writer.begin() as conn:
            await self._disable(conn, endpoint.tenant, endpoint.id, reason, now_utc())

    async def note_success(self, endpoint: Endpoint) -> None:
        if endpoint.failing_since is None:
            return
        async with self.engines.writer.begin() as conn:
            await conn.execute(
                update(endpoint_t)
                .where(_one(endpoint.tenant, endpoint.id))
                .values(failing_since=None)
            )

    async def note_failure(self, endpoint: Endpoint, error: str) -> None:
        """Remember when the failures began; disable once they last too long."""
        now = now_utc()
        since = endpoint.failing_since
        if since is None:
            async with self.engines.writer.begin() as conn:
                await conn.execute(
                    update(endpoint_t)
                    .where(
                        and_(
                            _one(endpoint.tenant, endpoint.id),
                            endpoint_t.c.failing_since.is_(None),
                        )
                    )
                    .values(failing_since=now)
                )
        elif (now - since).total_seconds() >= self.disable_after_s:
            await self.disable(
                endpoint, f"failing without a success since {iso(since)}; last error: {error}"
            )

    # ---------------------------------------------------------------- delivery log

    async def deliveries(
        self,
        tenant: str,
        endpoint_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: tuple[datetime, str] | None = None,
    ) -> list[DeliveryJSON]:
        """Newest first, keyset-paginated on (created_at, id)."""
        await self.get(tenant, endpoint_id)
        cond = [_its(tenant, endpoint_id)]
        if status is not None:
            cond.append(outbox_t.c.status == status)
        if cursor is not None:
            cond.append(paging.after(cursor, outbox_t.c.created_at, outbox_t.c.id))
        query = (
            select(outbox_t)
            .where(and_(*cond))
            .order_by(*paging.newest_first(outbox_t.c.created_at, outbox_t.c.id))
            .limit(limit)
        )
        async with self.engines.reader.connect() as conn:
            return [delivery_json(r) for r in await conn.execute(query)]

    async def delivery(self, tenant: str, endpoint_id: str, delivery_id: str) -> DeliveryJSON:
        """One delivery of the endpoint. Raises ``NotFound`` for a missing (or another
        tenant's) endpoint or delivery."""
        await self.get(tenant, endpoint_id)
        async with self.engines.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(outbox_t).where(
                        and_(outbox_t.c.id == delivery_id, _its(tenant, endpoint_id))
                    )
                )
            ).first()
        if row is None:
            raise _missing_delivery(delivery_id)
        return delivery_json(row)

    async def redeliver(self, tenant: str, endpoint_id: str, delivery_id: str) -> DeliveryJSON:
        """Queue a delivery again, at once, with the same ``webhook-id``. Raises
        ``NotFound``, or ``Conflict`` while the endpoint is disabled."""
        endpoint = await self.get(tenant, endpoint_id)
        if not endpoint.enabled:
            raise Conflict("the endpoint is disabled; enable it first", code="endpoint_disabled")
        now = now_utc()
        async with self.engines.writer.begin() as conn:
            res = await conn.execute(
                update(outbox_t)
                .where(and_(outbox_t.c.id == delivery_id, _its(tenant, endpoint_id)))
                .values(
                    status=RowStatus.PENDING.value,
                    next_attempt_at=now,
                    expires_at=now + timedelta(seconds=self.max_age_s),
                )
            )
            if not res.rowcount:
                raise _missing_delivery(delivery_id)
        return await self.delivery(tenant, endpoint_id, delivery_id)
