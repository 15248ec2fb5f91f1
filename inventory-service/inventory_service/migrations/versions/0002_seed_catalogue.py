"""The seed's catalogue, with an opening ledger row per product.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from service_common.storage import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CATALOGUE = [
    ("P001", "Laptop", Decimal("999.99"), 50),
    ("P002", "Wireless Mouse", Decimal("29.99"), 200),
    ("P003", "USB-C Cable", Decimal("15.99"), 500),
    ("P004", "Mechanical Keyboard", Decimal("149.99"), 30),
]

# Table shapes as of this revision, so later schema changes cannot alter what this step writes.
products = sa.table(
    "products",
    sa.column("product_id", sa.String),
    sa.column("name", sa.String),
    sa.column("price", sa.Numeric(12, 2)),
    sa.column("available_quantity", sa.BigInteger),
    sa.column("reserved_quantity", sa.BigInteger),
    sa.column("created_at", UTCDateTime),
    sa.column("updated_at", UTCDateTime),
)
ledger = sa.table(
    "stock_ledger",
    sa.column("product_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("available_delta", sa.BigInteger),
    sa.column("reserved_delta", sa.BigInteger),
    sa.column("created_at", UTCDateTime),
)


def upgrade() -> None:
    now = dt.datetime.now(dt.UTC)
    op.bulk_insert(
        products,
        [
            {
                "product_id": p,
                "name": n,
                "price": price,
                "available_quantity": q,
                "reserved_quantity": 0,
                "created_at": now,
                "updated_at": now,
            }
            for p, n, price, q in CATALOGUE
        ],
    )
    op.bulk_insert(
        ledger,
        [
            {"product_id": p, "kind": "initial", "available_delta": q, "reserved_delta": 0, "created_at": now}
            for p, _, _, q in CATALOGUE
        ],
    )


def downgrade() -> None:
    ids = [p for p, *_ in CATALOGUE]
    op.execute(ledger.delete().where(ledger.c.product_id.in_(ids)))
    op.execute(products.delete().where(products.c.product_id.in_(ids)))
