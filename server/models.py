"""Database tables (SQLModel). The database is the truth; see docs/architecture.md.

- ``task``: one row per process task, its current state.
- ``feed``: one row per feed (``user:<id>`` or ``role:<id>``, see ``server.feeds``): the
  last ``seq`` given out and the ``count`` of running tasks and ``postponed`` count of
  postponed tasks after it (``server.counts``). Locked for the length of a write
  transaction.
- ``feed_event``: append-only log of every change to a feed, holding the exact
  WebSocket message that was (or will be) sent; replay and gap filling read it.
- ``process_instance`` and ``process_definition``: the life of business processes.
- ``revocation``: when each revoked person's earlier tokens stopped being good.
- ``role`` and ``role_member``: role queues and who is in them.
- ``substitution``: who stands in for whom, when; ``state`` moves pending → active →
  ended as the clock passes its times (each move claimed once, in the database).
- ``seen``: per person and feed, the last seq they have seen (the panel's "new" marks).
- ``audience_change``: a log of "this person's feeds may have changed" (a membership
  or a substitution), which every instance polls to move its open sockets.
- ``preference``: one row per person who saved notification preferences
  (``server.preferences``), the validated value as JSON.

Every row carries its ``tenant``; ids are unique per tenant. Timestamps are stored as UTC.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Text
from sqlmodel import Field, SQLModel


def _ts(nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class Task(SQLModel, table=True):
    __tablename__ = "task"
    __table_args__ = (
        Index("ix_task_owner_status", "tenant", "owner", "status"),
        Index("ix_task_role_status", "tenant", "role", "status"),
        Index("ix_task_record", "tenant", "record_entity", "record_id", "owner"),
        Index("ix_task_due", "status", "postponed_until"),
        Index("ix_task_instance", "tenant", "process_instance_id"),
        Index("ix_task_overdue", "overdue", "due_at"),
    )

    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=200)
    owner: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=200)
    acted_by: str | None = Field(default=None, max_length=200)
    title: str = Field(sa_column=Column(Text, nullable=False))
    kind: str = Field(max_length=20)
    status: str = Field(max_length=20)
    process_instance_id: str | None = Field(default=None, max_length=200)
    process_name: str | None = Field(default=None, max_length=200)
    record_entity: str | None = Field(default=None, max_length=100)
    record_id: str | None = Field(default=None, max_length=200)
    record_title: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    postponed_until: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())
    ended_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    body_hash: str = Field(max_length=64)
    due_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    priority: str = Field(default="normal", max_length=10)
    overdue: bool = False
    actions: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JSON
    outcome: str | None = Field(default=None, max_length=200)
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    completed_by: str | None = Field(default=None, max_length=200)
    follows: str | None = Field(default=None, max_length=200)


class Feed(SQLModel, table=True):
    __tablename__ = "feed"

    tenant: str = Field(primary_key=True, max_length=64)
    feed: str = Field(primary_key=True, max_length=210)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    count: int
    postponed: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class FeedEvent(SQLModel, table=True):
    __tablename__ = "feed_event"

    tenant: str = Field(primary_key=True, max_length=64)
    feed: str = Field(primary_key=True, max_length=210)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True))
    type: str = Field(max_length=20)
    task_id: str = Field(max_length=200)
    count: int
    message: str = Field(sa_column=Column(Text, nullable=False))
    postponed: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    created_at: datetime = Field(sa_column=_ts(index=True))


class ProcessInstance(SQLModel, table=True):
    __tablename__ = "process_instance"
    __table_args__ = (Index("ix_process_name_status", "tenant", "name", "status"),)

    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=200)
    name: str = Field(max_length=200)
    status: str = Field(max_length=20)
    expect_more: bool = False
    started_at: datetime = Field(sa_column=_ts())
    ended_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    duration_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class ProcessDefinition(SQLModel, table=True):
    __tablename__ = "process_definition"

    tenant: str = Field(primary_key=True, max_length=64)
    name: str = Field(primary_key=True, max_length=200)
    disabled: bool = False
    updated_at: datetime = Field(sa_column=_ts())


class Revocation(SQLModel, table=True):
    """A person's tokens issued up to ``revoked_at`` are refused (``POST /users/{user}/revoke``)."""

    __tablename__ = "revocation"

    tenant: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=200)
    revoked_at: datetime = Field(sa_column=_ts(index=True))


class Role(SQLModel, table=True):
    __tablename__ = "role"

    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=200)
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())


class RoleMember(SQLModel, table=True):
    __tablename__ = "role_member"
    __table_args__ = (Index("ix_role_member_user", "tenant", "user_id"),)

    tenant: str = Field(primary_key=True, max_length=64)
    role: str = Field(primary_key=True, max_length=200)
    user_id: str = Field(primary_key=True, max_length=200)


class Substitution(SQLModel, table=True):
    __tablename__ = "substitution"
    __table_args__ = (
        Index("ix_substitution_user", "tenant", "user_id"),
        Index("ix_substitution_substitute", "tenant", "substitute", "state"),
        Index("ix_substitution_due", "state", "starts_at", "ends_at"),
    )

    tenant: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=200)
    user_id: str = Field(max_length=200)
    substitute: str = Field(max_length=200)
    starts_at: datetime = Field(sa_column=_ts())
    ends_at: datetime = Field(sa_column=_ts())
    state: str = Field(max_length=20)  # pending | active | ended
    created_at: datetime = Field(sa_column=_ts())


class AudienceChange(SQLModel, table=True):
    __tablename__ = "audience_change"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    tenant: str = Field(max_length=64)
    user_id: str = Field(max_length=200)
    at: datetime = Field(sa_column=_ts(index=True))


class TaskChange(SQLModel, table=True):
    """One applied change of a task: its history (``GET /tasks/{id}/history``)."""

    __tablename__ = "task_change"
    __table_args__ = (Index("ix_task_change_task", "tenant", "task_id", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    tenant: str = Field(max_length=64)
    task_id: str = Field(max_length=200)
    at: datetime = Field(sa_column=_ts())
    op: str = Field(max_length=20)
    actor: str | None = Field(default=None, max_length=200)
    acting_as: str = Field(
        max_length=20
    )  # producer | clock | owner | member | claimer | substitute
    status: str = Field(max_length=20)
    owner: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=200)
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JSON


class Preference(SQLModel, table=True):
    """A person's notification preferences (``PUT /me/preferences``); no row: defaults."""

    __tablename__ = "preference"

    tenant: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=200)
    body: str = Field(sa_column=Column(Text, nullable=False))  # JSON: server.preferences
    updated_at: datetime = Field(sa_column=_ts())


class Seen(SQLModel, table=True):
    """The last seq of each feed a person has seen ("new since you last looked",
    ``server.seen``); it only moves forward."""

    __tablename__ = "seen"

    tenant: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, max_length=200)
    feed: str = Field(primary_key=True, max_length=210)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=_ts())


task_t = Task.__table__  # type: ignore[attr-defined]
feed_t = Feed.__table__  # type: ignore[attr-defined]
event_t = FeedEvent.__table__  # type: ignore[attr-defined]
instance_t = ProcessInstance.__table__  # type: ignore[attr-defined]
definition_t = ProcessDefinition.__table__  # type: ignore[attr-defined]
revocation_t = Revocation.__table__  # type: ignore[attr-defined]
role_t = Role.__table__  # type: ignore[attr-defined]
member_t = RoleMember.__table__  # type: ignore[attr-defined]
substitution_t = Substitution.__table__  # type: ignore[attr-defined]
audience_t = AudienceChange.__table__  # type: ignore[attr-defined]
change_t = TaskChange.__table__  # type: ignore[attr-defined]
preference_t = Preference.__table__  # type: ignore[attr-defined]
seen_t = Seen.__table__  # type: ignore[attr-defined]
