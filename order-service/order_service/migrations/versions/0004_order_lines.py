"""Order lines: one row per product of an order (carts). Expand only.

Every existing order becomes a one-line order (its product, quantity and unit price copied into line 0),
nothing lost. The order row keeps its product_id, quantity and unit_price columns, holding the first
line, so the previous release runs on this schema during a rolling update; an order it writes without
lines is read by this release as its one line. total_price widens to hold the largest cart (MAX_LINES
<= 100 lines x MAX_QUANTITY <= 100,000 x a price of 12 digits). Dropping the first-line columns (the
contract step) belongs to a later release.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from service_common.storage import big_id

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_lines",
        sa.Column("order_id", big_id(), sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=True),
        sa.CheckConstraint("quantity > 0", name="line_quantity_positive"),
        sa.UniqueConstraint("order_id", "product_id", name="uq_order_lines_product"),
    )
    op.execute(
        "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price) "
        "SELECT id, 0, product_id, quantity, unit_price FROM orders"
    )
    # SQLite does not enforce numeric precision: nothing to widen there.
    if op.get_context().dialect.name == "postgresql":
        op.alter_column(
            "orders", "total_price", type_=sa.Numeric(20, 2), existing_type=sa.Numeric(18, 2), existing_nullable=True
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.alter_column(
            "orders", "total_price", type_=sa.Numeric(18, 2), existing_type=sa.Numeric(20, 2), existing_nullable=True
        )
    op.drop_table("order_lines")
