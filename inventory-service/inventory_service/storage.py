"""Inventory storage: products, reservations keyed by order, and an append-only stock ledger.

Each function here that changes stock says so in its name (reserve, release, commit, restock,
create_product) and is the only writer of the stock columns for that change. Every change is one
transaction that also writes its ledger row; concurrency is settled by conditional updates and
the reservation's primary key, so it holds across any number of replicas.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from inventory_service.domain import (
    InsufficientStock,
    Product,
    ProductExists,
    ProductNotFound,
    ProductStock,
    Reservation,
    ReservationCommitted,
    ReservationMismatch,
    ReservationNotFound,
    ReservationReleased,
    ReservationStatus,
    Reserved,
    StockCheck,
)
from service_common.storage import UTCDateTime, big_id, insert_ignoring_conflict, reading, snapshot, utcnow, writing

metadata = sa.MetaData()

products = sa.Table(
    "products",
    metadata,
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

# Enum members are bound as their values: psycopg would otherwise send a member's name.
HELD, RELEASED, COMMITTED = (s.value for s in ReservationStatus)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    # NULL product and quantity: a tombstone, released before anything was reserved.
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

stock_ledger = sa.Table(
    "stock_ledger",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.String(64), sa.ForeignKey("products.product_id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("available_delta", sa.BigInteger, nullable=False),
    sa.Column("reserved_delta", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('initial', 'restock', 'reserve', 'release', 'commit')", name="ledger_kind"),
    sa.Index("ix_stock_ledger_product_id", "product_id"),
    sqlite_autoincrement=True,
)


class _Conflicted(Exception):
    """Rolls back a stock take whose reservation key turned out to be taken already."""


# --- reads ---------------------------------------------------------------------------------------------------


def _product(row: sa.Row[Any]) -> Product:
    return Product(row.product_id, row.name, row.price, row.available_quantity, row.reserved_quantity)


def _as_reservation(row: sa.Row[Any]) -> Reservation:
    return Reservation(
        row.order_id,
        row.product_id,
        row.quantity,
        row.unit_price,
        ReservationStatus(row.status),
        row.created_at,
        row.updated_at,
    )


def list_products(engine: Engine) -> list[Product]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(products).order_by(products.c.product_id)).all()
    return [_product(r) for r in rows]


def get_product(engine: Engine, product_id: str) -> Product:
    with reading(engine) as conn:
        row = conn.execute(sa.select(products).where(products.c.product_id == product_id)).first()
    if row is None:
        raise ProductNotFound(product_id)
    return _product(row)


def get_reservation(engine: Engine, order_id: str) -> Reservation:
    with reading(engine) as conn:
        row = _reservation(conn, order_id)
    if row is None:
        raise ReservationNotFound(order_id)
    return _as_reservation(row)


def check(engine: Engine, product_id: str, quantity: int) -> StockCheck:
    product = get_product(engine, product_id)
    return StockCheck(
        available=product.available_quantity >= quantity,
        available_quantity=product.available_quantity,
        requested_quantity=quantity,
        price=product.price,
    )


def _reservation(conn: Connection, order_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(reservations).where(reservations.c.order_id == order_id)).first()


def _product_exists(conn: Connection, product_id: str) -> bool:
    query = sa.select(products.c.product_id).where(products.c.product_id == product_id)
    return conn.execute(query).first() is not None


# --- stock changes -------------------------------------------------------------------------------------------


def _ledger(conn: Connection, product_id: str, kind: str, available: int, reserved: int, order_id: str | None) -> None:
    conn.execute(
        stock_ledger.insert().values(
            product_id=product_id,
            kind=kind,
            available_delta=available,
            reserved_delta=reserved,
            order_id=order_id,
            created_at=utcnow(),
        )
    )


def reserve(engine: Engine, order_id: str, product_id: str, quantity: int) -> Reserved:
    """Hold `quantity` units for `order_id`, once. A retry with the same order is answered again."""
    now = utcnow()
    try:
        with writing(engine) as conn:
            taken = conn.execute(
                products.update()
                .where(products.c.product_id == product_id, products.c.available_quantity >= quantity)
                .values(
                    available_quantity=products.c.available_quantity - quantity,
                    reserved_quantity=products.c.reserved_quantity + quantity,
                    updated_at=now,
                )
                .returning(products.c.price)
            ).first()
            if taken is not None:
                row = conn.execute(
                    insert_ignoring_conflict(conn, reservations, ["order_id"])
                    .values(
                        order_id=order_id,
                        product_id=product_id,
                        quantity=quantity,
                        unit_price=taken.price,
                        status=HELD,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(*reservations.c)
                ).first()
                if row is None:
                    raise _Conflicted
                _ledger(conn, product_id, "reserve", -quantity, quantity, order_id)
                return Reserved(_as_reservation(row), created=True)
    except _Conflicted:
        pass
    # Not taken: a replay of an earlier reserve, a tombstone, an unknown product, or not enough stock.
    with reading(engine) as conn:
        existing = _reservation(conn, order_id)
        if existing is None:
            if not _product_exists(conn, product_id):
                raise ProductNotFound(product_id)
            available = conn.execute(
                sa.select(products.c.available_quantity).where(products.c.product_id == product_id)
            ).scalar_one()
    if existing is None:
        raise InsufficientStock(product_id, available, quantity)
    if existing.status == RELEASED:
        raise ReservationReleased(f"Order {order_id} was released; it can never hold stock again.")
    if existing.product_id != product_id or existing.quantity != quantity:
        raise ReservationMismatch(f"Order {order_id} already holds a different reservation.")
    return Reserved(_as_reservation(existing), created=False)


def release(engine: Engine, order_id: str, product_id: str | None = None, quantity: int | None = None) -> Reservation:
    """Make `order_id` hold nothing: release a held reservation exactly once, or leave a tombstone."""
    now = utcnow()
    with writing(engine) as conn:
        existing = _reservation(conn, order_id)
        if existing is None:
            tombstone = conn.execute(
                insert_ignoring_conflict(conn, reservations, ["order_id"])
                .values(order_id=order_id, status=RELEASED, created_at=now, updated_at=now)
                .returning(*reservations.c)
            ).first()
            if tombstone is not None:
                return _as_reservation(tombstone)
            # A reserve committed in between: settle against what it wrote.
            existing = _reservation(conn, order_id)
            assert existing is not None  # the insert conflicted on this very key
        _check_matches(existing, product_id, quantity)
        if existing.status == COMMITTED:
            raise ReservationCommitted(order_id)
        if existing.status == RELEASED:
            return _as_reservation(existing)
        released = conn.execute(
            reservations.update()
            .where(reservations.c.order_id == order_id, reservations.c.status == HELD)
            .values(status=RELEASED, updated_at=now)
            .returning(*reservations.c)
        ).first()
        if released is None:  # a concurrent release won; it returned the stock
            again = _reservation(conn, order_id)
            assert again is not None  # reservations are never deleted
            return _as_reservation(again)
        _move_stock(conn, released.product_id, released.quantity, -released.quantity, now)
        _ledger(conn, released.product_id, "release", released.quantity, -released.quantity, order_id)
        return _as_reservation(released)


def commit(engine: Engine, order_id: str) -> Reservation:
    """Turn a held reservation into a sale: the units leave `reserved_quantity` for good."""
    now = utcnow()
    with writing(engine) as conn:
        done = conn.execute(
            reservations.update()
            .where(reservations.c.order_id == order_id, reservations.c.status == HELD)
            .values(status=COMMITTED, updated_at=now)
            .returning(*reservations.c)
        ).first()
        if done is not None:
            _move_stock(conn, done.product_id, 0, -done.quantity, now)
            _ledger(conn, done.product_id, "commit", 0, -done.quantity, order_id)
            return _as_reservation(done)
        existing = _reservation(conn, order_id)
    if existing is None:
        raise ReservationNotFound(order_id)
    if existing.status == RELEASED:
        raise ReservationReleased(f"Order {order_id} was released; there is nothing to commit.")
    return _as_reservation(existing)


def restock(engine: Engine, product_id: str, quantity: int) -> Product:
    now = utcnow()
    with writing(engine) as conn:
        row = conn.execute(
            products.update()
            .where(products.c.product_id == product_id)
            .values(available_quantity=products.c.available_quantity + quantity, updated_at=now)
            .returning(*products.c)
        ).first()
        if row is None:
            raise ProductNotFound(product_id)
        _ledger(conn, product_id, "restock", quantity, 0, None)
    return _product(row)


def create_product(engine: Engine, product_id: str, name: str, price: Decimal, quantity: int) -> Product:
    now = utcnow()
    with writing(engine) as conn:
        row = conn.execute(
            insert_ignoring_conflict(conn, products, ["product_id"])
            .values(
                product_id=product_id,
                name=name,
                price=price,
                available_quantity=quantity,
                reserved_quantity=0,
                created_at=now,
                updated_at=now,
            )
            .returning(*products.c)
        ).first()
        if row is None:
            raise ProductExists(product_id)
        _ledger(conn, product_id, "initial", quantity, 0, None)
    return _product(row)


def update_product(engine: Engine, product_id: str, *, name: str | None, price: Decimal | None) -> Product:
    """Change name or price (those given); never stock. Orders keep the price they were placed at."""
    changes: dict[str, Any] = {"name": name, "price": price}
    with writing(engine) as conn:
        query = products.update().where(products.c.product_id == product_id)
        values = {key: value for key, value in changes.items() if value is not None}
        row = conn.execute(query.values(**values, updated_at=utcnow()).returning(*products.c)).first()
    if row is None:
        raise ProductNotFound(product_id)
    return _product(row)


def _move_stock(conn: Connection, product_id: str, available: int, reserved: int, now: dt.datetime) -> None:
    conn.execute(
        products.update()
        .where(products.c.product_id == product_id)
        .values(
            available_quantity=products.c.available_quantity + available,
            reserved_quantity=products.c.reserved_quantity + reserved,
            updated_at=now,
        )
    )


def _check_matches(existing: sa.Row[Any], product_id: str | None, quantity: int | None) -> None:
    if existing.product_id is None:  # a tombstone holds nothing to compare
        return
    if (product_id is not None and product_id != existing.product_id) or (
        quantity is not None and quantity != existing.quantity
    ):
        raise ReservationMismatch(f"Order {existing.order_id} holds a different reservation.")


# --- audit ---------------------------------------------------------------------------------------------------


def list_reservations(engine: Engine) -> list[Reservation]:
    """Every reservation that holds or held stock (tombstones left out), for the cross-service audit."""
    query = sa.select(reservations).where(reservations.c.product_id.is_not(None))
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    return [_as_reservation(r) for r in rows]


def stock_report(engine: Engine) -> dict[str, ProductStock]:
    """Per product: stock columns, the ledger's sums, and the sum of held reservations, all as of one
    moment (a reserve committing between two of the reads would otherwise look like a leak)."""
    with snapshot(engine) as conn:
        # Sold: what commits took out of reserved for good (a commit row's reserved delta is -quantity).
        sold = sa.case((stock_ledger.c.kind == "commit", -stock_ledger.c.reserved_delta), else_=0)
        ledger = {
            r.product_id: (int(r.available), int(r.reserved), int(r.sold))
            for r in conn.execute(
                sa.select(
                    stock_ledger.c.product_id,
                    sa.func.sum(stock_ledger.c.available_delta).label("available"),
                    sa.func.sum(stock_ledger.c.reserved_delta).label("reserved"),
                    sa.func.sum(sold).label("sold"),
                ).group_by(stock_ledger.c.product_id)
            )
        }
        held = {
            r.product_id: int(r.held)
            for r in conn.execute(
                sa.select(reservations.c.product_id, sa.func.sum(reservations.c.quantity).label("held"))
                .where(reservations.c.status == HELD)
                .group_by(reservations.c.product_id)
            )
        }
        rows = conn.execute(sa.select(products)).all()
    return {
        r.product_id: ProductStock(
            available_quantity=r.available_quantity,
            reserved_quantity=r.reserved_quantity,
            ledger_available=ledger.get(r.product_id, (0, 0, 0))[0],
            ledger_reserved=ledger.get(r.product_id, (0, 0, 0))[1],
            sold_quantity=ledger.get(r.product_id, (0, 0, 0))[2],
            held_reservations=held.get(r.product_id, 0),
        )
        for r in rows
    }
