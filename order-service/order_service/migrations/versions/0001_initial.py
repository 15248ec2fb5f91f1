"""Orders: the saga's log, with idempotency keys and the worker's lease.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from service_common.storage import UTCDateTime, big_id

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", big_id(), primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=True),
        sa.Column("total_price", sa.Numeric(14, 2), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("cancelled_at", UTCDateTime, nullable=True),
        sa.Column("fulfilled_at", UTCDateTime, nullable=True),
        sa.Column("idempotency_scope", sa.String(128), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=True),
        sa.Column("key_expires_at", UTCDateTime, nullable=True),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_body", sa.Text, nullable=True),
        sa.Column("claimed_until", UTCDateTime, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'rejected', 'failing', 'failed', 'cancelling', 'cancelled', "
            "'fulfilling', 'fulfilled')",
            name="order_status",
        ),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_orders_idempotency"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_orders_status_updated_at", "orders", ["status", "updated_at"])
    op.create_index("ix_orders_customer_id", "orders", ["customer_id"])


def downgrade() -> None:
    op.drop_table("orders")
