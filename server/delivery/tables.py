"""Tables of the delivery side: webhook endpoints, browser push subscriptions, and the
durable outbox that delivers to both.

- ``webhook_endpoint``: one receiver registered by a producer of a tenant: URL, the
  event types and (optionally) the owners it wants, its signing secret, and whether it
  is enabled (an endpoint that answers 410 or keeps failing is disabled, with the
  reason).
- ``push_subscription``: one browser's Web Push subscription of one person (tenant and
  owner). The push service URL is unique (``endpoint_hash``) across tenants: the same
  browser registering again updates the row (for another person, of this tenant or
  another, only when it comes with the same keys).
- ``outbox``: one row per message to one target (a webhook delivery or a push) of the
  row's tenant, written in the same transaction as the change it announces. A worker
  claims due rows with a lease, so each row is attempted by one instance at a time; the
  row is also the delivery log (attempts, last status, last error).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel


def _ts(nullable: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"

    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=40)
    url: str = Field(sa_column=Column(Text, nullable=False))
    event_types: str = Field(sa_column=Column(Text, nullable=False))  # JSON list
    owners: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JSON
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    secret: str = Field(max_length=100)
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    failing_since: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())


class PushSubscription(SQLModel, table=True):
    __tablename__ = "push_subscription"
    __table_args__ = (Index("ix_push_subscription_owner", "tenant", "owner"),)

    tenant: str = Field(max_length=64)
    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(max_length=200)
    endpoint: str = Field(sa_column=Column(Text, nullable=False))
    endpoint_hash: str = Field(max_length=64, unique=True)
    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)
    created_at: datetime = Field(sa_column=_ts())
    last_success_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # The registering token's ``locale`` claim: the language its pushes are written in.
    locale: str | None = Field(default=None, max_length=35)


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_target", "target", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    tenant: str = Field(max_length=64)
    channel: str = Field(max_length=20)  # "webhook" | "webpush"
    target: str = Field(max_length=40)  # webhook_endpoint.id | push_subscription.id
    event_type: str = Field(max_length=40)
    task_id: str = Field(max_length=200)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=20)  # pending | delivered | failed | superseded
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())
    created_at: datetime = Field(sa_column=_ts())
    last_attempt_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_status: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


endpoint_t = WebhookEndpoint.__table__  # type: ignore[attr-defined]
subscription_t = PushSubscription.__table__  # type: ignore[attr-defined]
outbox_t = OutboxRow.__table__  # type: ignore[attr-defined]
