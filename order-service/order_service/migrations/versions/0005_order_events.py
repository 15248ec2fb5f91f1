"""Order events: the transactional outbox (P12). Expand only.

One row per state change a consumer acts on (order.confirmed, order.cancelled, order.fulfilled), written
in the same transaction as the change. `position` orders the feed on SQLite (one writer: positions are
handed out in commit order); on PostgreSQL `tx` (the writer's transaction id, pg_current_xact_id()) with
the position orders it, so a reader never moves past an event that can still commit below it.
`published_at` is set by the broker relay (P13). `orders.event_sequence` counts each order's events, so
a per-order sequence never repeats, even after old events are pruned.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from service_common.storage import UTCDateTime, big_id

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("event_sequence", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "order_events",
        sa.Column("position", big_id(), primary_key=True, autoincrement=True),
        sa.Column("order_id", big_id(), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", UTCDateTime, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("tx", sa.BigInteger, nullable=True),
        sa.Column("published_at", UTCDateTime, nullable=True),
        sa.CheckConstraint("sequence > 0", name="event_sequence_positive"),
        sa.UniqueConstraint("order_id", "sequence", name="uq_order_events_sequence"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_order_events_tx_position", "order_events", ["tx", "position"])
    op.create_index("ix_order_events_occurred_at", "order_events", ["occurred_at"])
    op.create_index(
        "ix_order_events_unpublished",
        "order_events",
        ["position"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("order_events")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("event_sequence")
