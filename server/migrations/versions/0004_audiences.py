"""audiences: tenants on every row, feeds beyond one owner, roles, substitutions

Every table gains ``tenant`` (existing rows move into ``default``) and the tables keyed
by an id are keyed by ``(tenant, id)``. Feeds are named (``user:<id>``, ``role:<id>``)
instead of by owner: an existing owner's feed becomes ``user:<owner>``, with its seq,
count and kept events. Tasks may be offered to a role (``owner`` null, ``role`` set)
and record who acted last (``acted_by``).

Tables whose primary key changes are rebuilt (new table, copy, drop, rename), the one
way that is the same on SQLite and PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

DEFAULT = "'default'"


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _s(name: str, length: int, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _rebuild(
    table: str,
    columns: list[sa.Column[Any]],
    pk: Sequence[str],
    copy: dict[str, str],
    indexes: dict[str, Sequence[str]],
    unique: Sequence[str] = (),
) -> None:
    """Replace ``table`` by one with ``columns`` and primary key ``pk``; ``copy`` maps
    each new column to the SQL expression over the old row that fills it."""
    new = f"{table}_v4"
    constraints: list[sa.Constraint] = [sa.PrimaryKeyConstraint(*pk)]
    if unique:
        constraints.append(sa.UniqueConstraint(*unique))
    op.create_table(new, *columns, *constraints)
    names = ", ".join(copy)
    exprs = ", ".join(copy.values())
    op.execute(f"INSERT INTO {new} ({names}) SELECT {exprs} FROM {table}")
    op.drop_table(table)
    op.rename_table(new, table)
    for name, cols in indexes.items():
        op.create_index(name, table, list(cols), unique=False)


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


def upgrade() -> None:
    _rebuild(
        "task",
        [
            _s("tenant", 64),
            _s("id", 200),
            _s("owner", 200, nullable=True),
            _s("role", 200, nullable=True),
            _s("acted_by", 200, nullable=True),
            sa.Column("title", sa.Text(), nullable=False),
            _s("kind", 20),
            _s("status", 20),
            _s("process_instance_id", 200, nullable=True),
            _s("process_name", 200, nullable=True),
            _s("record_entity", 100, nullable=True),
            _s("record_id", 200, nullable=True),
            sa.Column("record_title", sa.Text(), nullable=True),
            sa.Column("url", sa.Text(), nullable=True),
            _ts("postponed_until", nullable=True),
            _ts("created_at"),
            _ts("updated_at"),
            _ts("ended_at", nullable=True),
            _s("body_hash", 64),
        ],
        ["tenant", "id"],
        {
            "tenant": DEFAULT,
            **_same(
                "id",
                "owner",
                "title",
                "kind",
                "status",
                "process_instance_id",
                "process_name",
                "record_entity",
                "record_id",
                "record_title",
                "url",
                "postponed_until",
                "created_at",
                "updated_at",
                "ended_at",
                "body_hash",
            ),
        },
        {
            "ix_task_owner_status": ["tenant", "owner", "status"],
            "ix_task_role_status": ["tenant", "role", "status"],
            "ix_task_record": ["tenant", "record_entity", "record_id", "owner"],
            "ix_task_due": ["status", "postponed_until"],
            "ix_task_instance": ["tenant", "process_instance_id"],
        },
    )
    _rebuild(
        "feed",
        [
            _s("tenant", 64),
            _s("feed", 210),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
        ],
        ["tenant", "feed"],
        {"tenant": DEFAULT, "feed": "'user:' || owner", "seq": "seq", "count": "count"},
        {},
    )
    _rebuild(
        "feed_event",
        [
            _s("tenant", 64),
            _s("feed", 210),
            sa.Column("seq", sa.BigInteger(), nullable=False),
            _s("type", 20),
            _s("task_id", 200),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            _ts("created_at"),
        ],
        ["tenant", "feed", "seq"],
        {
            "tenant": DEFAULT,
            "feed": "'user:' || owner",
            **_same("seq", "type", "task_id", "count", "message", "created_at"),
        },
        {"ix_feed_event_created_at": ["created_at"]},
    )
    _rebuild(
        "process_instance",
        [
            _s("tenant", 64),
            _s("id", 200),
            _s("name", 200),
            _s("status", 20),
            sa.Column("expect_more", sa.Boolean(), nullable=False),
            _ts("started_at"),
            _ts("ended_at", nullable=True),
            sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        ],
        ["tenant", "id"],
        {
            "tenant": DEFAULT,
            **_same("id", "name", "status", "expect_more", "started_at", "ended_at", "duration_ms"),
        },
        {"ix_process_name_status": ["tenant", "name", "status"]},
    )
    _rebuild(
        "process_definition",
        [
            _s("tenant", 64),
            _s("name", 200),
            sa.Column("disabled", sa.Boolean(), nullable=False),
            _ts("updated_at"),
        ],
        ["tenant", "name"],
        {"tenant": DEFAULT, **_same("name", "disabled", "updated_at")},
        {},
    )
    _rebuild(
        "revocation",
        [_s("tenant", 64), _s("user_id", 200), _ts("revoked_at")],
        ["tenant", "user_id"],
        {"tenant": DEFAULT, **_same("user_id", "revoked_at")},
        {"ix_revocation_revoked_at": ["revoked_at"]},
    )
    _rebuild(
        "webhook_endpoint",
        [
            _s("tenant", 64),
            _s("id", 40),
            sa.Column("url", sa.Text(), nullable=False),
            sa.Column("event_types", sa.Text(), nullable=False),
            sa.Column("owners", sa.Text(), nullable=True),
            sa.Column("description", sa.Text(), nullable=False),
            _s("secret", 100),
            sa.Column("enabled", sa.Boolean(), nullable=False),
            sa.Column("disabled_reason", sa.Text(), nullable=True),
            _ts("disabled_at", nullable=True),
            _ts("failing_since", nullable=True),
            _ts("created_at"),
            _ts("updated_at"),
        ],
        ["tenant", "id"],
        {
            "tenant": DEFAULT,
            **_same(
                "id",
                "url",
                "event_types",
                "owners",
                "description",
                "secret",
                "enabled",
                "disabled_reason",
                "disabled_at",
                "failing_since",
                "created_at",
                "updated_at",
            ),
        },
        {},
    )
    _rebuild(
        "push_subscription",
        [
            _s("tenant", 64),
            _s("id", 40),
            _s("owner", 200),
            sa.Column("endpoint", sa.Text(), nullable=False),
            _s("endpoint_hash", 64),
            _s("p256dh", 200),
            _s("auth", 100),
            _ts("created_at"),
            _ts("last_success_at", nullable=True),
        ],
        ["id"],
        {
            "tenant": DEFAULT,
            **_same(
                "id",
                "owner",
                "endpoint",
                "endpoint_hash",
                "p256dh",
                "auth",
                "created_at",
                "last_success_at",
            ),
        },
        {"ix_push_subscription_owner": ["tenant", "owner"]},
        unique=["endpoint_hash"],
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tenant", sa.String(length=64), nullable=False, server_default="default")
        )

    op.create_table(
        "role",
        _s("tenant", 64),
        _s("id", 200),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("tenant", "id"),
    )
    op.create_table(
        "role_member",
        _s("tenant", 64),
        _s("role", 200),
        _s("user_id", 200),
        sa.PrimaryKeyConstraint("tenant", "role", "user_id"),
    )
    op.create_index("ix_role_member_user", "role_member", ["tenant", "user_id"], unique=False)
    op.create_table(
        "substitution",
        _s("tenant", 64),
        _s("id", 200),
        _s("user_id", 200),
        _s("substitute", 200),
        _ts("starts_at"),
        _ts("ends_at"),
        _s("state", 20),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("tenant", "id"),
    )
    op.create_index("ix_substitution_user", "substitution", ["tenant", "user_id"], unique=False)
    op.create_index(
        "ix_substitution_substitute",
        "substitution",
        ["tenant", "substitute", "state"],
        unique=False,
    )
    op.create_index(
        "ix_substitution_due", "substitution", ["state", "starts_at", "ends_at"], unique=False
    )
    op.create_table(
        "audience_change",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        _s("tenant", 64),
        _s("user_id", 200),
        _ts("at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audience_change_at", "audience_change", ["at"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("0004 (tenants) is not reversible: restore a backup instead")
