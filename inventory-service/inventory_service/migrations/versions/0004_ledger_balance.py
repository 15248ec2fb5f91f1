"""The stock ledger's balance rows (P12 retention): ledger rows older than LEDGER_RETENTION_HOURS are folded
into one `balance` row per product, whose deltas are their sums and whose `sold` is the units their commits
sold, so the ledger's sums (the audit's) and the sold figure stay what they were.

Expand only: a wider `kind` check, a nullable column and a partial unique index (one balance row per
product). The previous release writes only the kinds it knows and sums deltas as before; it would not count
`sold` in a balance row, which only the fold writes (run once this release is out).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OLD_KINDS = "kind IN ('initial', 'restock', 'reserve', 'release', 'commit')"
_NEW_KINDS = "kind IN ('initial', 'restock', 'reserve', 'release', 'commit', 'balance')"


def upgrade() -> None:
    with op.batch_alter_table("stock_ledger", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("sold", sa.BigInteger, nullable=True))
        batch.drop_constraint("ledger_kind", type_="check")
        batch.create_check_constraint("ledger_kind", _NEW_KINDS)
    op.create_index(
        "uq_stock_ledger_balance",
        "stock_ledger",
        ["product_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'balance'"),
        sqlite_where=sa.text("kind = 'balance'"),
    )


def downgrade() -> None:
    op.drop_index("uq_stock_ledger_balance", "stock_ledger")
    with op.batch_alter_table("stock_ledger", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint("ledger_kind", type_="check")
        batch.create_check_constraint("ledger_kind", _OLD_KINDS)
        batch.drop_column("sold")
