"""revocation: when a person's earlier tokens stopped being good

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "revocation",
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    with op.batch_alter_table("revocation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocation_revoked_at"), ["revoked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("revocation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocation_revoked_at"))
    op.drop_table("revocation")
