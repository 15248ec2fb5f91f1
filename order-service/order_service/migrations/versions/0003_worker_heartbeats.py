"""Recovery workers' heartbeats, one row per worker process, so the order service (and its console) can
show whether the workers are moving.

A new table only: expand-only, the previous release ignores it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from service_common.storage import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.String(128), primary_key=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("beat_at", UTCDateTime, nullable=False),
        sa.Column("stale_after_seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
