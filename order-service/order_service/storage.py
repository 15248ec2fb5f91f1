"""Order storage. The order row is the saga's log: every transition is a conditional update on the
state it expects, so exactly one request or worker wins each step, across any number of replicas."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from service_common.storage import UTCDateTime, big_id, reading, rfc3339, utcnow, writing

metadata = sa.MetaData()

PENDING, CONFIRMED, REJECTED, FAILING, FAILED = "pending", "confirmed", "rejected", "failing", "failed"
CANCELLING, CANCELLED, FULFILLING, FULFILLED = "cancelling", "cancelled", "fulfilling", "fulfilled"
STATES = (PENDING, CONFIRMED, REJECTED, FAILING, FAILED, CANCELLING, CANCELLED, FULFILLING, FULFILLED)
# Refused orders are kept for the record but are not orders: left out of lists unless asked for.
REFUSED = (REJECTED, FAILING, FAILED)
LISTED = tuple(s for s in STATES if s not in REFUSED)
# States the recovery worker finishes when a request did not.
UNFINISHED = (PENDING, FAILING, CANCELLING, FULFILLING)

ORDER_PREFIX = "ORD"

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.String(64), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("unit_price", sa.Numeric(12, 2), nullable=True),
    # Up to the largest price (12 digits) times the largest quantity (5 digits).
    sa.Column("total_price", sa.Numeric(18, 2), nullable=True),
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
    sa.Index("ix_orders_status_updated_at", "status", "updated_at"),
    sa.Index("ix_orders_customer_id", "customer_id"),
    sqlite_autoincrement=True,
)


def format_order_id(number: int) -> str:
    return f"{ORDER_PREFIX}{number:08d}"


def parse_order_id(value: str) -> int | None:
    """The row id an order id names, or None when it names nothing (only the canonical form counts)."""
    digits = value[len(ORDER_PREFIX) :]
    if not value.startswith(ORDER_PREFIX) or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    number = int(digits)
    return number if format_order_id(number) == value else None


def order_json(row: Any) -> dict[str, Any]:
    """The API's view of an order, from a row or a mapping of its columns."""
    m = row._mapping if hasattr(row, "_mapping") else row
    body = {
        "order_id": format_order_id(m["id"]),
        "product_id": m["product_id"],
        "quantity": m["quantity"],
        "customer_id": m["customer_id"],
        "status": m["status"],
        "unit_price": m["unit_price"],
        "total_price": m["total_price"],
        "created_at": rfc3339(m["created_at"]),
    }
    if m["cancelled_at"] is not None:
        body["cancelled_at"] = rfc3339(m["cancelled_at"])
    if m["fulfilled_at"] is not None:
        body["fulfilled_at"] = rfc3339(m["fulfilled_at"])
    return body


# --- reads ---------------------------------------------------------------------------------------------------


def get_order(engine: Engine, number: int) -> Any:
    with reading(engine) as conn:
        return conn.execute(sa.select(orders).where(orders.c.id == number)).first()


def list_orders(
    engine: Engine, *, limit: int, offset: int, customer_id: str | None, status: str | None
) -> tuple[list[Any], int]:
    where = [orders.c.status == status] if status else [orders.c.status.in_(LISTED)]
    if customer_id is not None:
        where.append(orders.c.customer_id == customer_id)
    with reading(engine) as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(orders).where(*where)).scalar_one()
        rows = conn.execute(
            sa.select(orders).where(*where).order_by(orders.c.id.desc()).limit(limit).offset(offset)
        ).all()
    return rows, total


def find_by_key(engine: Engine, scope: str, key: str) -> Any:
    with reading(engine) as conn:
        return _by_key(conn, scope, key)


def _by_key(conn: Connection, scope: str, key: str) -> Any:
    query = sa.select(orders).where(orders.c.idempotency_scope == scope, orders.c.idempotency_key == key)
    return conn.execute(query).first()


# --- writes --------------------------------------------------------------------------------------------------


def create_pending(
    engine: Engine,
    *,
    product_id: str,
    quantity: int,
    customer_id: str,
    key: tuple[str, str, str] | None,
    key_ttl: dt.timedelta,
) -> Any:
    """Write the order as `pending` before inventory is asked for anything.

    `key` is (scope, idempotency key, request fingerprint). An expired key still on an old order is
    cleared first, in the same transaction. Raises IntegrityError when a live order holds the key.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "product_id": product_id,
        "quantity": quantity,
        "customer_id": customer_id,
        "status": PENDING,
        "created_at": now,
        "updated_at": now,
    }
    with writing(engine) as conn:
        if key is not None:
            scope, idem, fingerprint = key
            conn.execute(
                orders.update()
                .where(
                    orders.c.idempotency_scope == scope,
                    orders.c.idempotency_key == idem,
                    orders.c.key_expires_at <= now,
                )
                .values(idempotency_scope=None, idempotency_key=None)
            )
            values.update(
                idempotency_scope=scope,
                idempotency_key=idem,
                request_fingerprint=fingerprint,
                key_expires_at=now + key_ttl,
            )
        return conn.execute(orders.insert().values(**values).returning(*orders.c)).first()


def transition(engine: Engine, number: int, expected: str | tuple[str, ...], new: str, **values: Any) -> Any:
    """Move an order from an expected state to `new`; the row as written, or None if it was not there."""
    allowed = (expected,) if isinstance(expected, str) else expected
    now = utcnow()
    with writing(engine) as conn:
        return conn.execute(
            orders.update()
            .where(orders.c.id == number, orders.c.status.in_(allowed))
            .values(status=new, updated_at=now, claimed_until=None, **values)
            .returning(*orders.c)
        ).first()


def priced(unit_price: Decimal, quantity: int) -> dict[str, Decimal]:
    return {"unit_price": unit_price, "total_price": unit_price * quantity}


# --- recovery ------------------------------------------------------------------------------------------------


def claim_unfinished(engine: Engine, *, older_than: dt.timedelta, lease: dt.timedelta, limit: int) -> list[Any]:
    """Claim orders a request left unfinished, so no two workers handle one order at once.

    PostgreSQL: rows locked with FOR UPDATE SKIP LOCKED while the lease is written. SQLite: one writer
    at a time (BEGIN IMMEDIATE), so the conditional lease update is the claim.
    """
    now = utcnow()
    stale = [
        orders.c.status.in_(UNFINISHED),
        orders.c.updated_at < now - older_than,
        sa.or_(orders.c.claimed_until.is_(None), orders.c.claimed_until < now),
    ]
    with writing(engine) as conn:
        query = sa.select(orders.c.id).where(*stale).order_by(orders.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = [r.id for r in conn.execute(query)]
        if not ids:
            return []
        return conn.execute(
            orders.update().where(orders.c.id.in_(ids), *stale).values(claimed_until=now + lease).returning(*orders.c)
        ).all()


def orders_for_audit(engine: Engine) -> list[Any]:
    with reading(engine) as conn:
        return conn.execute(
            sa.select(orders.c.id, orders.c.product_id, orders.c.quantity, orders.c.status, orders.c.updated_at)
        ).all()
