"""Inventory storage: products, reservations keyed by order, and an append-only stock ledger.

Each function here that changes stock says so in its name (reserve, release, commit, restock,
create_product) and is the only writer of the stock columns for that change. Every change is one
transaction that also writes its ledger row; concurrency is settled by conditional updates and
the reservation's primary key, so it holds across any number of replicas.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from inventory_service.domain import (
    InsufficientStock,
    Line,
    Product,
    ProductExists,
    ProductNotFound,
    ProductStock,
    Reservation,
    ReservationCommitted,
    ReservationLine,
    ReservationMismatch,
    ReservationNotFound,
    ReservationReleased,
    ReservationStatus,
    Reserved,
    Shortage,
    StockCheck,
)
from service_common.storage import (
    DriverQuery,
    DriverStatement,
    UTCDateTime,
    big_id,
    insert_ignoring_conflict,
    lines_of,
    reading,
    skip_locked,
    snapshot,
    unnest_rows,
    utcnow,
    writing,
)

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
    # A balance row's units sold by the commits folded into it (fold_ledger); null on every other kind.
    sa.Column("sold", sa.BigInteger, nullable=True),
    sa.CheckConstraint("kind IN ('initial', 'restock', 'reserve', 'release', 'commit', 'balance')", name="ledger_kind"),
    sa.Index("ix_stock_ledger_product_id", "product_id"),
    sa.Index(
        "uq_stock_ledger_balance",
        "product_id",
        unique=True,
        postgresql_where=sa.text("kind = 'balance'"),
        sqlite_where=sa.text("kind = 'balance'"),
    ),
    sqlite_autoincrement=True,
)


# One row per product of a reservation; the reservation's own product columns hold its first line (what
# releases before carts read and wrote; a reservation an older release wrote has no lines but those).
reservation_lines = sa.Table(
    "reservation_lines",
    metadata,
    sa.Column("order_id", sa.String(64), sa.ForeignKey("reservations.order_id"), primary_key=True),
    sa.Column("product_id", sa.String(64), sa.ForeignKey("products.product_id"), primary_key=True),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
    sa.CheckConstraint("quantity > 0", name="line_quantity_positive"),
    sa.Index("ix_reservation_lines_product_id", "product_id"),
)


# The reserve path's statements, built once (bound per call), run on the driver's cursor of the
# transaction's connection (DriverStatement).
_HELD = ReservationStatus.HELD
_PRICES = DriverStatement(
    sa.select(products.c.product_id, products.c.price).where(
        products.c.product_id.in_(sa.bindparam("ids", expanding=True))
    )
)
# FOR NO KEY UPDATE: the lock an UPDATE of these columns takes; it does not block the key-share lock that a
# reservation row's foreign key takes on its product.
_LOCK = DriverStatement(
    sa.select(products.c.product_id, products.c.available_quantity, products.c.price)
    .where(products.c.product_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(products.c.product_id)
    .with_for_update(key_share=True)
)
_TAKE = DriverStatement(
    products.update()
    .where(products.c.product_id == sa.bindparam("pid"), products.c.available_quantity >= sa.bindparam("q"))
    .values(
        available_quantity=products.c.available_quantity - sa.bindparam("q"),
        reserved_quantity=products.c.reserved_quantity + sa.bindparam("q"),
        updated_at=sa.bindparam("now", type_=UTCDateTime),
    )
    .returning(products.c.product_id, products.c.price)
)
_DROP_KEYS = DriverStatement(
    reservations.delete().where(reservations.c.order_id.in_(sa.bindparam("ids", expanding=True)))
)
_REPRICE = DriverStatement(
    reservations.update().where(reservations.c.order_id == sa.bindparam("oid")).values(unit_price=sa.bindparam("price"))
)
_INSERT_LEDGER = DriverStatement(stock_ledger.insert())
_INSERT_LINES = DriverStatement(reservation_lines.insert())
_KEYS: dict[str, DriverStatement] = {}

# PostgreSQL: a batch of reserves of one product, each of one line (the hot product's), decided by one
# statement where the plain path takes five (the price read, the keys, the stock, the ledger, the lines):
# each statement is a round trip, which costs the service and the server about as much CPU as the
# statement's own work (docs/performance.md). Its parts, in the order the plain path takes its locks:
#  - `keys`: each reserve's key, in order-id order, at the product's price (INSERT … SELECT from the
#    product, so an unknown product takes no key; a key already there is a retry or a tombstone);
#  - `took`: the conditional update of the product for the sum the new keys ask for;
#  - only if it took the stock: each new reserve's ledger and line row, at the price it locked.
# It gives one row per new key, with the price it locked (null when the stock did not suffice: the keys
# are then held or dropped as on the plain path). SQLite, in process, runs the plain statements.
_asks = unnest_rows(("order_id", sa.String()), ("quantity", sa.BigInteger()), ordinality="n")
_at = sa.bindparam("now", type_=UTCDateTime)
_keys = (
    postgresql.insert(reservations)
    .from_select(
        ["order_id", "product_id", "quantity", "unit_price", "status", "created_at", "updated_at"],
        sa.select(
            _asks.c.order_id, products.c.product_id, _asks.c.quantity, products.c.price, sa.literal(HELD), _at, _at
        )
        .where(products.c.product_id == sa.bindparam("pid"))
        .order_by(_asks.c.n),
    )
    .on_conflict_do_nothing(index_elements=["order_id"])
    .returning(reservations.c.order_id, reservations.c.product_id, reservations.c.quantity, reservations.c.unit_price)
    .cte("keys")
)
_asked = sa.select(sa.func.sum(_keys.c.quantity)).scalar_subquery()
_took = (
    products.update()
    .where(products.c.product_id == sa.bindparam("pid"), products.c.available_quantity >= _asked)
    .values(
        available_quantity=products.c.available_quantity - _asked,
        reserved_quantity=products.c.reserved_quantity + _asked,
        updated_at=_at,
    )
    .returning(products.c.price)
    .cte("took")
)
_RESERVE_AT_ONCE = DriverStatement(
    sa.select(_keys.c.order_id, _keys.c.unit_price, _took.c.price.label("locked"))
    .select_from(_keys.outerjoin(_took, sa.true()))
    .add_cte(
        stock_ledger.insert()
        .from_select(
            ["product_id", "kind", "available_delta", "reserved_delta", "order_id", "created_at"],
            sa.select(
                _keys.c.product_id, sa.literal("reserve"), -_keys.c.quantity, _keys.c.quantity, _keys.c.order_id, _at
            )
            .select_from(_keys.join(_took, sa.true()))
            .order_by(_keys.c.order_id),
        )
        .cte("ledger"),
        reservation_lines.insert()
        .from_select(
            ["order_id", "product_id", "line_no", "quantity", "unit_price"],
            sa.select(_keys.c.order_id, _keys.c.product_id, sa.literal(0), _keys.c.quantity, _took.c.price).select_from(
                _keys.join(_took, sa.true())
            ),
        )
        .cte("lines"),
    )
)


def _insert_keys(conn: Connection) -> DriverStatement:
    """INSERT … ON CONFLICT (order_id) DO NOTHING RETURNING order_id, built once per dialect."""
    name = conn.dialect.name
    if name not in _KEYS:
        _KEYS[name] = DriverStatement(
            insert_ignoring_conflict(conn, reservations, ["order_id"]).returning(reservations.c.order_id)
        )
    return _KEYS[name]


def _key_row(ask: tuple[str, Sequence[Line]], prices: dict[str, Decimal], now: dt.datetime) -> dict[str, Any]:
    """A new reservation's row: its first line, at the price read before the lock (corrected if it moved)."""
    order_id, lines = ask
    first = lines[0]
    return {
        "order_id": order_id,
        "product_id": first.product_id,
        "quantity": first.quantity,
        "unit_price": prices[first.product_id],
        "status": HELD,
        "created_at": now,
        "updated_at": now,
    }


class _Short(Exception):
    """A reserve one of whose lines found too little stock: it holds nothing."""


# --- reads ---------------------------------------------------------------------------------------------------


def _product(row: sa.Row[Any]) -> Product:
    return Product(row.product_id, row.name, row.price, row.available_quantity, row.reserved_quantity)


def _as_reservation(row: sa.Row[Any], lines: tuple[ReservationLine, ...]) -> Reservation:
    return Reservation(
        row.order_id,
        row.product_id,
        row.quantity,
        row.unit_price,
        ReservationStatus(row.status),
        row.created_at,
        row.updated_at,
        lines,
    )


def _lines(conn: Connection, rows: Sequence[sa.Row[Any]]) -> dict[str, tuple[ReservationLine, ...]]:
    """Each reservation's lines; one without line rows (written by a release before carts) is its one line."""
    found = {
        owner: [ReservationLine(line.product_id, line.quantity, line.unit_price) for line in lines]
        for owner, lines in lines_of(conn, reservation_lines, [r.order_id for r in rows]).items()
    }
    result: dict[str, tuple[ReservationLine, ...]] = {}
    for r in rows:
        if r.order_id in found:
            result[r.order_id] = tuple(found[r.order_id])
        elif r.product_id is not None:
            result[r.order_id] = (ReservationLine(r.product_id, r.quantity, r.unit_price),)
        else:
            result[r.order_id] = ()  # a tombstone
    return result


def _with_lines(conn: Connection, row: sa.Row[Any]) -> Reservation:
    return _as_reservation(row, _lines(conn, [row])[row.order_id])


def list_products(engine: Engine) -> list[Product]:
    with reading(engine) as conn:
        rows = conn.execute(sa.select(products).order_by(products.c.product_id)).all()
    return [_product(r) for r in rows]


# The read path's statement, on the driver's cursor (service_common.storage.DriverQuery): only the columns a
# Product holds, in its fields' order, so the row is the Product's arguments as they are (the timestamps
# were read and parsed into datetimes, then dropped: ~4 us of each read).
_PRODUCT_BY_ID = DriverQuery(
    sa.select(*(products.c[f.name] for f in dataclasses.fields(Product))).where(
        products.c.product_id == sa.bindparam("b_id")
    )
)


def get_product(engine: Engine, product_id: str) -> Product:
    row = _PRODUCT_BY_ID.first(engine, {"b_id": product_id})
    if row is None:
        raise ProductNotFound(product_id)
    return Product(*tuple(row))  # the columns are its fields, in order


def get_reservation(engine: Engine, order_id: str) -> Reservation:
    with reading(engine) as conn:
        row = _reservation(conn, order_id)
        if row is None:
            raise ReservationNotFound(order_id)
        return _with_lines(conn, row)


def check(engine: Engine, lines: Sequence[Line]) -> list[StockCheck]:
    """Availability of each line now, in the order asked; changes nothing. Unknown products: 404 (the first)."""
    with reading(engine) as conn:
        query = sa.select(products).where(products.c.product_id.in_([line.product_id for line in lines]))
        known = {r.product_id: r for r in conn.execute(query)}
    for line in lines:
        if line.product_id not in known:
            raise ProductNotFound(line.product_id)
    return [
        StockCheck(
            product_id=line.product_id,
            available=known[line.product_id].available_quantity >= line.quantity,
            available_quantity=known[line.product_id].available_quantity,
            requested_quantity=line.quantity,
            price=known[line.product_id].price,
        )
        for line in lines
    ]


def _reservation(conn: Connection, order_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(reservations).where(reservations.c.order_id == order_id)).first()


# --- stock changes -------------------------------------------------------------------------------------------


def _ledger_row(
    product_id: str, kind: str, available: int, reserved: int, order_id: str | None, now: dt.datetime
) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "kind": kind,
        "available_delta": available,
        "reserved_delta": reserved,
        "order_id": order_id,
        "created_at": now,
    }


def _ledger(conn: Connection, product_id: str, kind: str, available: int, reserved: int, order_id: str | None) -> None:
    _INSERT_LEDGER.run(conn, _ledger_row(product_id, kind, available, reserved, order_id, utcnow()))


def reserve(engine: Engine, order_id: str, lines: Sequence[Line]) -> Reserved:
    """Hold every line for `order_id`, or none, once. A retry with the same lines is answered again.

    One transaction of its own: reserve_many() with this one reserve in it, then settle() its outcome.
    """
    (outcome,) = reserve_many(engine, [(order_id, lines)])
    return settle(engine, order_id, lines, outcome)


class StockMoved(RuntimeError):
    """A product's stock changed under the lock reserve_many holds on it: never expected; nothing is held."""

    def __init__(self, product_id: str) -> None:
        super().__init__(f"stock of {product_id} changed under its lock")


class _Taken(Exception):
    """The order's key was taken before this reserve: a retry, a tombstone, or the same order twice in a batch."""


# What reserve_many decides for each reserve: held (Reserved), or why not (an exception, raised by settle()).
Outcome = Reserved | Exception


def reserve_many(engine: Engine, asks: Sequence[tuple[str, Sequence[Line]]]) -> list[Outcome]:
    """Several reserves (order id, lines) in one transaction with one commit (a group commit), each decided
    on its own: one that cannot be met changes nothing and takes nothing from the others.

    Locks are taken in one global order, the same as a single reserve, release and commit take them:
    first the reservations' keys, in order-id order (one INSERT … ON CONFLICT DO NOTHING; a key already
    taken is a retry or a tombstone, settled afterwards by reading it), then every product the batch
    touches, in product-id order (SELECT … FOR NO KEY UPDATE on PostgreSQL; SQLite has one writer). With
    the rows locked, each reserve whose key is new is checked against the stock left by the ones before
    it, in arrival order; a short one's key is deleted again before the commit, so it never existed. Then
    one conditional update per product for the sum held, and the ledger and line rows of every reserve.
    When the new reserves touch one product only, its conditional update for all of them is tried first:
    it locks the row as the SELECT would, and when they all fit (the usual case) nothing more is needed.
    On PostgreSQL, a batch of one-line reserves of one product (the hot product's) takes the keys and that
    conditional update, with the ledger and line rows, in one statement (_RESERVE_AT_ONCE).
    The conditional updates and the columns' checks are what hold stock non-negative; the arithmetic here
    only chooses which reserves to try.
    """
    outcomes: list[Outcome | None] = [None] * len(asks)
    now = utcnow()
    with writing(engine) as conn:
        touched = sorted({line.product_id for _, lines in asks for line in lines})
        if conn.dialect.name == "postgresql" and len(touched) == 1 and all(len(lines) == 1 for _, lines in asks):
            _reserve_at_once(conn, asks, touched[0], outcomes, now)
        else:
            _reserve_plainly(conn, asks, touched, outcomes, now)
    return [o if o is not None else RuntimeError("reserve left undecided") for o in outcomes]


def _candidates(
    asks: Sequence[tuple[str, Sequence[Line]]], outcomes: list[Outcome | None], prices: dict[str, Decimal] | None
) -> list[int]:
    """The reserves to try: each order once, naming only known products (when `prices` says which are);
    the others are decided here."""
    candidates: list[int] = []
    seen: set[str] = set()
    for i, (order_id, lines) in enumerate(asks):
        unknown = None if prices is None else next((x.product_id for x in lines if x.product_id not in prices), None)
        if unknown is not None:
            outcomes[i] = ProductNotFound(unknown)
        elif order_id in seen:
            outcomes[i] = _Taken()  # the same order twice in one batch: the second is a retry of the first
        else:
            seen.add(order_id)
            candidates.append(i)
    return candidates


def _won(
    asks: Sequence[tuple[str, Sequence[Line]]], candidates: list[int], new: set[str], outcomes: list[Outcome | None]
) -> list[int]:
    """The candidates whose key this transaction inserted; the others found theirs taken."""
    for i in candidates:
        if asks[i][0] not in new:
            outcomes[i] = _Taken()
    return [i for i in candidates if asks[i][0] in new]


def _reserve_plainly(
    conn: Connection,
    asks: Sequence[tuple[str, Sequence[Line]]],
    touched: list[str],
    outcomes: list[Outcome | None],
    now: dt.datetime,
) -> None:
    """reserve_many() statement by statement: the prices, the keys, then the products locked (_hold)."""
    # Products are never deleted: one unknown now is unknown for good (and the key's row names it).
    prices = {r.product_id: r.price for r in _PRICES.rows(conn, {"ids": touched})}
    candidates = _candidates(asks, outcomes, prices)
    if candidates:
        keys = sorted(candidates, key=lambda i: asks[i][0])
        new = {r.order_id for r in _insert_keys(conn).rows(conn, [_key_row(asks[i], prices, now) for i in keys])}
        won = _won(asks, candidates, new, outcomes)
        if won:
            _hold(conn, asks, won, prices, outcomes, now)


def _reserve_at_once(
    conn: Connection,
    asks: Sequence[tuple[str, Sequence[Line]]],
    product_id: str,
    outcomes: list[Outcome | None],
    now: dt.datetime,
) -> None:
    """reserve_many() of reserves of one line each, all of `product_id`, on PostgreSQL: _RESERVE_AT_ONCE,
    then, only when the stock did not suffice for all of them, the plain path's lock and choice."""
    candidates = _candidates(asks, outcomes, None)
    keys = sorted(candidates, key=lambda i: asks[i][0])
    rows = _RESERVE_AT_ONCE.rows(
        conn,
        {
            "pid": product_id,
            "now": now,
            "b_order_id": [asks[i][0] for i in keys],
            "b_quantity": [asks[i][1][0].quantity for i in keys],
        },
    )
    if not rows:  # no key taken: each is a retry or a tombstone, or the product is unknown
        # Products are never deleted: one unknown now is unknown for good (and the key's row names it).
        known = _PRICES.rows(conn, {"ids": [product_id]})
        for i in candidates:
            outcomes[i] = _Taken() if known else ProductNotFound(product_id)
        return
    won = _won(asks, candidates, {r.order_id for r in rows}, outcomes)
    prices = {product_id: rows[0].unit_price}  # the price the keys were written at
    if rows[0].locked is not None:
        _write_held(conn, asks, won, {product_id: rows[0].locked}, prices, outcomes, now, rows_written=True)
    else:  # its conditional update found too little stock: lock, read and choose
        _hold(conn, asks, won, prices, outcomes, now, try_take=False)


def _hold(
    conn: Connection,
    asks: Sequence[tuple[str, Sequence[Line]]],
    won: list[int],
    prices: dict[str, Decimal],
    outcomes: list[Outcome | None],
    now: dt.datetime,
    *,
    try_take: bool = True,
) -> None:
    """The second half of reserve_many: the products locked, each new reserve held or refused.
    `try_take=False`: the one-product conditional update already failed in this transaction (the
    PostgreSQL statement's), so the row is locked and read at once."""
    products_of = sorted({line.product_id for i in won for line in asks[i][1]})
    if try_take and len(products_of) == 1:
        # One product (a lone reserve, or a hot product's batch): one conditional update for all of them
        # locks the row and takes the stock at once. Only when they do not all fit is the row locked and
        # read first, to choose which of them do.
        product_id = products_of[0]
        total = sum(line.quantity for i in won for line in asks[i][1])
        row = _TAKE.first(conn, {"pid": product_id, "q": total, "now": now})
        if row is not None:
            _write_held(conn, asks, won, {product_id: row.price}, prices, outcomes, now)
            return
    locked = {r.product_id: r for r in _LOCK.rows(conn, {"ids": products_of})}
    left = {p: r.available_quantity for p, r in locked.items()}
    taken = dict.fromkeys(products_of, 0)
    held: list[int] = []
    short: list[str] = []
    for i in won:
        order_id, lines = asks[i]
        if all(left[line.product_id] >= line.quantity for line in lines):
            for line in lines:
                left[line.product_id] -= line.quantity
                taken[line.product_id] += line.quantity
            held.append(i)
        else:
            short.append(order_id)
            outcomes[i] = _Short()
    if short:  # keys inserted above, in this transaction: removing them leaves no trace
        _DROP_KEYS.run(conn, {"ids": short})
    if not held:
        return
    for product_id in products_of:
        if taken[product_id]:
            row = _TAKE.first(conn, {"pid": product_id, "q": taken[product_id], "now": now})
            if row is None:  # the lock above makes this impossible; if it happens, nothing is held
                raise StockMoved(product_id)
    _write_held(conn, asks, held, {p: r.price for p, r in locked.items()}, prices, outcomes, now)


def _write_held(
    conn: Connection,
    asks: Sequence[tuple[str, Sequence[Line]]],
    held: list[int],
    price_of: dict[str, Decimal],
    prices: dict[str, Decimal],
    outcomes: list[Outcome | None],
    now: dt.datetime,
    *,
    rows_written: bool = False,
) -> None:
    """The reserves `held` (their stock taken, at the prices the locked rows had): their ledger and line
    rows (unless `rows_written`: with the stock), their key's price where it moved since the first read,
    and their outcomes."""
    ledger: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    repriced: list[dict[str, Any]] = []
    for i in held:
        order_id, lines = asks[i]
        kept = tuple(ReservationLine(x.product_id, x.quantity, price_of[x.product_id]) for x in lines)
        line_rows += [{"order_id": order_id, "line_no": n, **vars(x)} for n, x in enumerate(kept)]
        for x in sorted(kept, key=lambda x: x.product_id):
            ledger.append(_ledger_row(x.product_id, "reserve", -x.quantity, x.quantity, order_id, now))
        first = kept[0]
        if first.unit_price != prices[first.product_id]:  # repriced between the first read and the lock
            repriced.append({"oid": order_id, "price": first.unit_price})
        reservation = Reservation(order_id, first.product_id, first.quantity, first.unit_price, _HELD, now, now, kept)
        outcomes[i] = Reserved(reservation, created=True)
    if not rows_written:
        _INSERT_LEDGER.run(conn, ledger)
        _INSERT_LINES.run(conn, line_rows)
    if repriced:
        _REPRICE.run(conn, repriced)


def settle(engine: Engine, order_id: str, lines: Sequence[Line], outcome: Outcome) -> Reserved:
    """The answer to one reserve of reserve_many: its reservation, or the refusal, read after the commit."""
    if isinstance(outcome, Reserved):
        return outcome
    if isinstance(outcome, _Short):
        _refuse_short(engine, lines)
    if not isinstance(outcome, _Taken):
        raise outcome
    # The key was taken: a replay of an earlier reserve, or a tombstone.
    with reading(engine) as conn:
        existing = _reservation(conn, order_id)
        reservation = _with_lines(conn, existing) if existing is not None else None
    if reservation is None:
        # Named twice in one batch whose first was short (its key removed): try again, alone.
        return reserve(engine, order_id, lines)
    if reservation.status == ReservationStatus.RELEASED:
        raise ReservationReleased(f"Order {order_id} was released; it can never hold stock again.")
    if [(line.product_id, line.quantity) for line in reservation.lines] != [(x.product_id, x.quantity) for x in lines]:
        raise ReservationMismatch(f"Order {order_id} already holds a different reservation.")
    return Reserved(reservation, created=False)


def _refuse_short(engine: Engine, lines: Sequence[Line]) -> NoReturn:
    """Say why a reserve was rolled back: every short line."""
    checks = check(engine, lines)
    short = [Shortage(c.product_id, c.requested_quantity, c.available_quantity) for c in checks if not c.available]
    if not short:
        # Stock came back between the rolled-back reserve and this look; the reserve was still short.
        short = [Shortage(c.product_id, c.requested_quantity, c.available_quantity) for c in checks[:1]]
    raise InsufficientStock(short, lines=len(lines))


def release(engine: Engine, order_id: str, product_id: str | None = None, quantity: int | None = None) -> Reservation:
    """Make `order_id` hold nothing: release every held line exactly once, or leave a tombstone."""
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
                return _as_reservation(tombstone, ())
            # A reserve committed in between: settle against what it wrote.
            existing = _reservation(conn, order_id)
            assert existing is not None  # the insert conflicted on this very key
        held = _with_lines(conn, existing)
        _check_matches(held, product_id, quantity)
        if existing.status == COMMITTED:
            raise ReservationCommitted(order_id)
        if existing.status == RELEASED:
            return held
        released = conn.execute(
            reservations.update()
            .where(reservations.c.order_id == order_id, reservations.c.status == HELD)
            .values(status=RELEASED, updated_at=now)
            .returning(*reservations.c)
        ).first()
        if released is None:  # a concurrent release won; it returned the stock
            again = _reservation(conn, order_id)
            assert again is not None  # reservations are never deleted
            return _with_lines(conn, again)
        for line in sorted(held.lines, key=lambda x: x.product_id):
            _move_stock(conn, line.product_id, line.quantity, -line.quantity, now)
            _ledger(conn, line.product_id, "release", line.quantity, -line.quantity, order_id)
        return _as_reservation(released, held.lines)


def commit(engine: Engine, order_id: str) -> Reservation:
    """Turn a held reservation into a sale: every line's units leave `reserved_quantity` for good."""
    now = utcnow()
    with writing(engine) as conn:
        done = conn.execute(
            reservations.update()
            .where(reservations.c.order_id == order_id, reservations.c.status == HELD)
            .values(status=COMMITTED, updated_at=now)
            .returning(*reservations.c)
        ).first()
        if done is not None:
            sold = _with_lines(conn, done)
            for line in sorted(sold.lines, key=lambda x: x.product_id):
                _move_stock(conn, line.product_id, 0, -line.quantity, now)
                _ledger(conn, line.product_id, "commit", 0, -line.quantity, order_id)
            return sold
        existing = _reservation(conn, order_id)
        found = _with_lines(conn, existing) if existing is not None else None
    if found is None:
        raise ReservationNotFound(order_id)
    if found.status == ReservationStatus.RELEASED:
        raise ReservationReleased(f"Order {order_id} was released; there is nothing to commit.")
    return found


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


def _check_matches(existing: Reservation, product_id: str | None, quantity: int | None) -> None:
    """A release that names a product (and quantity) must name what the order holds: its one line."""
    if not existing.lines or (product_id is None and quantity is None):  # a tombstone holds nothing to compare
        return
    line = existing.lines[0]
    if (
        len(existing.lines) > 1
        or (product_id is not None and product_id != line.product_id)
        or (quantity is not None and quantity != line.quantity)
    ):
        raise ReservationMismatch(f"Order {existing.order_id} holds a different reservation.")


# --- retention ---------------------------------------------------------------------------------------------

BALANCE = "balance"


def fold_ledger(engine: Engine, *, older_than: dt.datetime, batch: int) -> tuple[int, bool]:
    """Fold up to `batch` ledger rows written before `older_than` into their product's one `balance` row,
    in one transaction: the rows are deleted and their deltas (and the units their commits sold) added to
    the balance, so every sum over the ledger stays what it was. (The rows folded, whether more are left.)

    The sums are those of the rows this transaction deleted (DELETE … RETURNING): a concurrent fold that
    deleted some first is not counted twice.
    """
    ledger = stock_ledger.c
    with writing(engine) as conn:
        query = skip_locked(
            conn,
            sa.select(ledger.id)
            .where(ledger.kind != BALANCE, ledger.created_at < older_than)
            .order_by(ledger.id)
            .limit(batch + 1),
        )
        ids = list(conn.execute(query).scalars())
        more = len(ids) > batch
        if not ids:
            return 0, False
        deleted = conn.execute(
            stock_ledger.delete()
            .where(ledger.id.in_(ids[:batch]))
            .returning(ledger.product_id, ledger.kind, ledger.available_delta, ledger.reserved_delta)
        ).all()
        sums: dict[str, list[int]] = {}
        for row in deleted:
            total = sums.setdefault(row.product_id, [0, 0, 0])
            total[0] += row.available_delta
            total[1] += row.reserved_delta
            total[2] += -row.reserved_delta if row.kind == "commit" else 0
        for product_id in sorted(sums):  # one order of row locks for every fold
            available, reserved, sold = sums[product_id]
            upsert = _dialect_insert(conn)(stock_ledger).values(
                product_id=product_id,
                kind=BALANCE,
                available_delta=available,
                reserved_delta=reserved,
                sold=sold,
                order_id=None,
                created_at=older_than,
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["product_id"],
                    index_where=sa.text("kind = 'balance'"),  # as the index says it, not a parameter
                    set_={
                        "available_delta": ledger.available_delta + upsert.excluded.available_delta,
                        "reserved_delta": ledger.reserved_delta + upsert.excluded.reserved_delta,
                        "sold": ledger.sold + upsert.excluded.sold,
                    },
                )
            )
        return len(deleted), more


def _dialect_insert(conn: Connection) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


# --- audit ---------------------------------------------------------------------------------------------------


def list_reservations(engine: Engine) -> list[Reservation]:
    """Every reservation that holds or held stock (tombstones left out), for the cross-service audit."""
    query = sa.select(reservations).where(reservations.c.product_id.is_not(None))
    with snapshot(engine) as conn:
        rows = conn.execute(query).all()
        lines = _lines(conn, rows)
    return [_as_reservation(r, lines[r.order_id]) for r in rows]


def stock_report(engine: Engine) -> dict[str, ProductStock]:
    """Per product: stock columns, the ledger's sums, and the sum of held reservation lines, all as of one
    moment (a reserve committing between two of the reads would otherwise look like a leak)."""
    with snapshot(engine) as conn:
        # Sold: what commits took out of reserved for good (a commit row's reserved delta is -quantity).
        # A balance row carries the sold units of the commits folded into it (fold_ledger).
        sold = sa.case(
            (stock_ledger.c.kind == "commit", -stock_ledger.c.reserved_delta),
            (stock_ledger.c.kind == BALANCE, stock_ledger.c.sold),
            else_=0,
        )
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
        held: dict[str, int] = {}
        lined = sa.exists().where(reservation_lines.c.order_id == reservations.c.order_id)
        by_line = (
            sa.select(reservation_lines.c.product_id, sa.func.sum(reservation_lines.c.quantity).label("held"))
            .join(reservations, reservations.c.order_id == reservation_lines.c.order_id)
            .where(reservations.c.status == HELD)
            .group_by(reservation_lines.c.product_id)
        )
        # Reservations an older release wrote without line rows hold their one line in their own columns.
        unlined = (
            sa.select(reservations.c.product_id, sa.func.sum(reservations.c.quantity).label("held"))
            .where(reservations.c.status == HELD, ~lined)
            .group_by(reservations.c.product_id)
        )
        for query in (by_line, unlined):
            for r in conn.execute(query):
                held[r.product_id] = held.get(r.product_id, 0) + int(r.held)
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
