"""live counts: every feed row keeps how many of its tasks are postponed

``feed.postponed`` is counted from the tasks table for every tenant and feed (a task
counts in its owner's feed, or in its role's while nobody has claimed it); a feed that
so far held only postponed tasks had no row and gets one (seq 0, count 0).
``feed_event.postponed`` is the postponed count that went with each event: unknown for
the events written before, so 0, except each feed's latest event, which takes the
feed's count (a heartbeat right after the upgrade then agrees with the database).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

# The feed a postponed task counts in (``TaskState.feed``); ``||`` works on SQLite and
# PostgreSQL alike.
_FEED_OF_TASK = "CASE WHEN t.owner IS NOT NULL THEN 'user:' || t.owner ELSE 'role:' || t.role END"


def upgrade() -> None:
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("postponed", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("feed_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("postponed", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        f"""
        UPDATE feed SET postponed = (
            SELECT count(*) FROM task t
            WHERE t.tenant = feed.tenant AND t.status = 'postponed'
              AND {_FEED_OF_TASK} = feed.feed
        )
        """
    )
    op.execute(
        f"""
        INSERT INTO feed (tenant, feed, seq, count, postponed)
        SELECT p.tenant, p.feed, 0, 0, count(*) FROM (
            SELECT t.tenant AS tenant, {_FEED_OF_TASK} AS feed FROM task t
            WHERE t.status = 'postponed'
        ) p
        WHERE NOT EXISTS (SELECT 1 FROM feed f WHERE f.tenant = p.tenant AND f.feed = p.feed)
        GROUP BY p.tenant, p.feed
        """
    )
    op.execute(
        """
        UPDATE feed_event SET postponed = (
            SELECT f.postponed FROM feed f
            WHERE f.tenant = feed_event.tenant AND f.feed = feed_event.feed
        )
        WHERE EXISTS (
            SELECT 1 FROM feed f
            WHERE f.tenant = feed_event.tenant AND f.feed = feed_event.feed
              AND f.seq = feed_event.seq AND f.postponed > 0
        )
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("feed_event", schema=None) as batch_op:
        batch_op.drop_column("postponed")
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.drop_column("postponed")
