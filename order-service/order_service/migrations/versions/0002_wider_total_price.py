"""Widen orders.total_price to hold the largest price times the largest quantity.

Numeric(14, 2) overflowed (a 500 on PostgreSQL) for a price near 10^10 ordered 1,000+ times. Widening a
numeric column is an expand-only change: the previous release reads and writes it unchanged.
SQLite does not enforce numeric precision, so there is nothing to do there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.alter_column(
            "orders", "total_price", type_=sa.Numeric(18, 2), existing_type=sa.Numeric(14, 2), existing_nullable=True
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.alter_column(
            "orders", "total_price", type_=sa.Numeric(14, 2), existing_type=sa.Numeric(18, 2), existing_nullable=True
        )
