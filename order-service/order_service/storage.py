"""Order storage. The order row is the saga's log: every transition is a conditional update on the
state it expects, so exactly one request or worker wins each step, across any number of replicas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from order_service.domain import LISTED, UNFINISHED, Order, OrderStatus, OrderSummary
from service_common.storage import UTCDateTime, big_id, reading, utcnow, writing

metadata = sa.MetaData()

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


def _order(row: sa.Row[Any] | None) -> Order | None:
    if row is None:
        return None
    return Order(**{**row._mapping, "status": OrderStatus(row.status)})


def _orders(rows: Sequence[sa.Row[Any]]) -> list[Order]:
    return [Order(**{**r._mapping, "status": OrderStatus(r.status)}) for r in rows]


# --- reads ---------------------------------------------------------------------------------------------------


def get_order(engine: Engine, number: int) -> Order | None:
    with reading(engine) as conn:
        return _order(conn.execute(sa.select(orders).where(orders.c.id == number)).first())


def list_orders(
    engine: Engine, *, limit: int, offset: int, customer_id: str | None, status: OrderStatus | None
) -> tuple[list[Order], int]:
    # Enum members are bound as their values: psycopg would otherwise send a member's name.
    where: list[sa.ColumnElement[bool]] = (
        [orders.c.status == status.value] if status else [orders.c.status.in_([s.value for s in LISTED])]
    )
    if customer_id is not None:
        where.append(orders.c.customer_id == customer_id)
    with reading(engine) as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(orders).where(*where)).scalar_one()
        rows = conn.execute(
            sa.select(orders).where(*where).order_by(orders.c.id.desc()).limit(limit).offset(offset)
        ).all()
    return _orders(rows), total


def find_by_key(engine: Engine, scope: str, key: str) -> Order | None:
    with reading(engine) as conn:
        query = sa.select(orders).where(orders.c.idempotency_scope == scope, orders.c.idempotency_key == key)
        return _order(conn.execute(query).first())


# --- writes --------------------------------------------------------------------------------------------------


def create_pending(
    engine: Engine,
    *,
    product_id: str,
    quantity: int,
    customer_id: str,
    key: tuple[str, str, str] | None,
    key_ttl: dt.timedelta,
) -> Order:
    """Write the order as `pending` before inventory is asked for anything.

    `key` is (scope, idempotency key, request fingerprint). An expired key still on an old order is
    cleared first, in the same transaction. Raises IntegrityError when a live order holds the key.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "product_id": product_id,
        "quantity": quantity,
        "customer_id": customer_id,
        "status": OrderStatus.PENDING.value,
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
        row = conn.execute(orders.insert().values(**values).returning(*orders.c)).one()
    return Order(**{**row._mapping, "status": OrderStatus(row.status)})


def transition(engine: Engine, number: int, expected: OrderStatus, new: OrderStatus, **values: Any) -> Order | None:
    """Move an order from an expected state to `new`; the order as written, or None if it was not there."""
    now = utcnow()
    with writing(engine) as conn:
        return _order(
            conn.execute(
                orders.update()
                .where(orders.c.id == number, orders.c.status == expected.value)
                .values(status=new.value, updated_at=now, claimed_until=None, **values)
                .returning(*orders.c)
            ).first()
        )


def priced(unit_price: Decimal, quantity: int) -> dict[str, Decimal]:
    return {"unit_price": unit_price, "total_price": unit_price * quantity}


# --- recovery ------------------------------------------------------------------------------------------------


def claim_unfinished(engine: Engine, *, older_than: dt.timedelta, lease: dt.timedelta, limit: int) -> list[Order]:
    """Claim orders a request left unfinished, so no two workers handle one order at once.

    PostgreSQL: rows locked with FOR UPDATE SKIP LOCKED while the lease is written. SQLite: one writer
    at a time (BEGIN IMMEDIATE), so the conditional lease update is the claim.
    """
    now = utcnow()
    stale = [
        orders.c.status.in_([s.value for s in UNFINISHED]),
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
        return _orders(
            conn.execute(
                orders.update()
                .where(orders.c.id.in_(ids), *stale)
                .values(claimed_until=now + lease)
                .returning(*orders.c)
            ).all()
        )


def orders_for_audit(engine: Engine) -> list[OrderSummary]:
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(orders.c.id, orders.c.product_id, orders.c.quantity, orders.c.status, orders.c.updated_at)
        ).all()
    return [OrderSummary(r.id, r.product_id, r.quantity, OrderStatus(r.status), r.updated_at) for r in rows]


# --- recovery workers' heartbeats ------------------------------------------------------------------------

worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("worker_id", sa.String(128), primary_key=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("beat_at", UTCDateTime, nullable=False),
    sa.Column("stale_after_seconds", sa.Float, nullable=False),
)

# A worker that has not beaten for this long is gone (a replaced pod): its row is dropped.
FORGET_WORKERS_AFTER = dt.timedelta(days=1)


def record_heartbeat(engine: Engine, worker_id: str, started_at: dt.datetime, stale_after: float) -> None:
    """Upsert this worker's heartbeat (an UPDATE first: the row exists on every beat but the first)."""
    now = utcnow()
    with writing(engine) as conn:
        updated = conn.execute(
            worker_heartbeats.update()
            .where(worker_heartbeats.c.worker_id == worker_id)
            .values(beat_at=now, stale_after_seconds=stale_after)
        ).rowcount
        if not updated:
            conn.execute(worker_heartbeats.delete().where(worker_heartbeats.c.beat_at < now - FORGET_WORKERS_AFTER))
            conn.execute(
                worker_heartbeats.insert().values(
                    worker_id=worker_id, started_at=started_at, beat_at=now, stale_after_seconds=stale_after
                )
            )


def worker_heartbeat_rows(engine: Engine) -> list[sa.Row[Any]]:
    with reading(engine) as conn:
        return list(conn.execute(sa.select(worker_heartbeats).order_by(worker_heartbeats.c.worker_id)).all())
