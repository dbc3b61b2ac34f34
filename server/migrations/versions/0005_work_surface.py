"""work surface: due dates, priorities, decisions from the card

Tasks gain ``due_at``, ``priority`` (``normal`` for every existing task), ``overdue``
(false), ``actions`` (JSON), and what a completion decided: ``outcome``, ``comment``,
``completed_by``; and ``follows``, the step it comes after (the hand-off to the next
step). An index finds the tasks falling due.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("priority", sa.String(length=10), nullable=False, server_default="normal")
        )
        batch_op.add_column(
            sa.Column("overdue", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("actions", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("comment", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("completed_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("follows", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_task_overdue", ["overdue", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index("ix_task_overdue")
        for name in (
            "follows",
            "completed_by",
            "comment",
            "outcome",
            "actions",
            "overdue",
            "priority",
        ):
            batch_op.drop_column(name)
        batch_op.drop_column("due_at")
