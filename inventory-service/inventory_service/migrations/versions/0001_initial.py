"""Products, reservations keyed by order, and the append-only stock ledger.

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
        "products",
        sa.Column("product_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("available_quantity", sa.BigInteger, nullable=False),
        sa.Column("reserved_quantity", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.CheckConstraint("available_quantity >= 0", name="available_not_negative"),
        sa.CheckConstraint("reserved_quantity >= 0", name="reserved_not_negative"),
        sa.CheckConstraint("price >= 0", name="price_not_negative"),
    )
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("product_id", sa.String(64), sa.ForeignKey("products.product_id"), nullable=True),
        sa.Column("quantity", sa.BigInteger, nullable=True),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.CheckConstraint("status IN ('held', 'released', 'committed')", name="reservation_status"),
        sa.CheckConstraint(
            "status = 'released' OR (product_id IS NOT NULL AND quantity > 0 AND unit_price IS NOT NULL)",
            name="reservation_complete",
        ),
    )
    op.create_table(
        "stock_ledger",
        sa.Column("id", big_id(), primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.String(64), sa.ForeignKey("products.product_id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("available_delta", sa.BigInteger, nullable=False),
        sa.Column("reserved_delta", sa.BigInteger, nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.CheckConstraint("kind IN ('initial', 'restock', 'reserve', 'release', 'commit')", name="ledger_kind"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_stock_ledger_product_id", "stock_ledger", ["product_id"])


def downgrade() -> None:
    op.drop_table("stock_ledger")
    op.drop_table("reservations")
    op.drop_table("products")
