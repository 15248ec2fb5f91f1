"""Event retention (P12): the feed's watermark of what was pruned, and an index for clearing expired
Idempotency-Keys. Expand only: a new table and an index; the previous release ignores both.

`event_feed_pruned` holds one row: the greatest feed cursor (tx, position) of any event pruned so far, so
a consumer whose cursor is below it is told 410 `gone` rather than silently missing events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from service_common.storage import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "event_feed_pruned",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tx", sa.BigInteger, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("pruned_count", sa.BigInteger, nullable=False),
        sa.Column("pruned_at", UTCDateTime, nullable=True),
        sa.CheckConstraint("id = 1", name="one_watermark"),
    )
    op.bulk_insert(table, [{"id": 1, "tx": 0, "position": 0, "pruned_count": 0, "pruned_at": None}])
    op.create_index(
        "ix_orders_key_expires_at",
        "orders",
        ["key_expires_at"],
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_key_expires_at", "orders")
    op.drop_table("event_feed_pruned")
