"""push locale: a push subscription keeps the language its pushes are written in

``push_subscription.locale`` holds the ``locale`` claim of the token that registered the
subscription (null: English). Existing subscriptions get null and read English until
their browser registers again (the panel does that on every start).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("push_subscription", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("push_subscription", schema=None) as batch_op:
        batch_op.drop_column("locale")
