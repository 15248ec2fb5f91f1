"""Reservation lines: one row per product an order holds (carts). Expand only.

Every reservation that holds or held stock becomes a one-line one (its product, quantity and price copied
into a line); tombstones hold nothing and get none. The reservation's own product columns stay and keep
the first line, so the previous release, which reads and writes only them, runs on this schema during a
rolling update; code that finds a reservation without lines reads those columns as its one line. The
contract step (dropping those columns) belongs to a later release, once no replica of this one's
predecessor is left.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservation_lines",
        sa.Column("order_id", sa.String(64), sa.ForeignKey("reservations.order_id"), primary_key=True),
        sa.Column("product_id", sa.String(64), sa.ForeignKey("products.product_id"), primary_key=True),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.CheckConstraint("quantity > 0", name="line_quantity_positive"),
    )
    op.create_index("ix_reservation_lines_product_id", "reservation_lines", ["product_id"])
    op.execute(
        "INSERT INTO reservation_lines (order_id, product_id, line_no, quantity, unit_price) "
        "SELECT order_id, product_id, 0, quantity, unit_price FROM reservations WHERE product_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_reservation_lines_product_id", "reservation_lines")
    op.drop_table("reservation_lines")
