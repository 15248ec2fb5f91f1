"""The event relay's lease (P13): one row per relay role, held by at most one relay at a time.

A relay publishes the outbox (order_events) to the broker only while it holds the lease: a conditional
update takes it when it is free or expired, renews it while held, and bumps `token` on every change of
holder, so a relay that lost it can tell (fencing) before it marks anything published. A new table only:
expand-only, the previous release ignores it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from service_common.storage import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    leases = op.create_table(
        "relay_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("token", sa.Integer, nullable=False, server_default="0"),
    )
    op.bulk_insert(leases, [{"name": "order-events", "holder": None, "expires_at": None, "token": 0}])


def downgrade() -> None:
    op.drop_table("relay_leases")
