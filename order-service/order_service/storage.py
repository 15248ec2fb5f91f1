"""Order storage. The order row is the saga's log: every transition is a conditional update on the
state it expects, so exactly one request or worker wins each step, across any number of replicas."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from order_service.domain import LISTED, UNFINISHED, Line, Order, OrderLine, OrderStatus, OrderSummary
from service_common.storage import (
    DriverQuery,
    DriverStatement,
    UTCDateTime,
    big_id,
    lines_of,
    reading,
    skip_locked,
    snapshot,
    unnest_rows,
    utcnow,
    writing,
    written,
)

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
    # Up to MAX_LINES (at most 100) x the largest quantity (at most 100,000) x the largest price (12 digits).
    sa.Column("total_price", sa.Numeric(20, 2), nullable=True),
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
    # The sequence of the order's last event (order_events): never reused, even once events are pruned.
    sa.Column("event_sequence", sa.Integer, nullable=False, server_default="0"),
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


# One row per line, in the order given. The order row's product_id and quantity hold the first line (what
# releases before carts read and wrote); an order an older release wrote has no lines but those.
order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("order_id", big_id(), sa.ForeignKey("orders.id"), primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.String(64), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price", sa.Numeric(12, 2), nullable=True),
    sa.CheckConstraint("quantity > 0", name="line_quantity_positive"),
    sa.UniqueConstraint("order_id", "product_id", name="uq_order_lines_product"),
)


# The transactional outbox: one row per state change a consumer acts on, written in the transaction that
# makes the change (docs/events.md). Refused orders (rejected, failed) were never orders: no event.
order_events = sa.Table(
    "order_events",
    metadata,
    sa.Column("position", big_id(), primary_key=True, autoincrement=True),
    sa.Column("order_id", big_id(), sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    # PostgreSQL: the writing transaction's id (pg_current_xact_id), which orders the feed; SQLite: null.
    sa.Column("tx", sa.BigInteger, nullable=True),
    sa.Column("published_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("sequence > 0", name="event_sequence_positive"),
    sa.UniqueConstraint("order_id", "sequence", name="uq_order_events_sequence"),
    sa.Index("ix_order_events_tx_position", "tx", "position"),
    sa.Index("ix_order_events_occurred_at", "occurred_at"),
    sa.Index(
        "ix_order_events_unpublished",
        "position",
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    ),
    sqlite_autoincrement=True,
)

EVENT_TYPES = {
    OrderStatus.CONFIRMED: "order.confirmed",
    OrderStatus.CANCELLED: "order.cancelled",
    OrderStatus.FULFILLED: "order.fulfilled",
}

# The order as the API shows it, as JSON bytes: an event's data (given by the saga; storage speaks no HTTP).
Describe = Callable[[Order], bytes]

_PG_TX = sa.text("pg_current_xact_id()::text::bigint")


def _move_order(status: OrderStatus) -> DriverStatement:
    """The conditional move into `status`, counting one more event on the order row when it raises one."""
    return _MOVE_ORDER_WITH_EVENT if status in EVENT_TYPES else _MOVE_ORDER


def _record_event(conn: Connection, order: Order, describe: Describe | None) -> None:
    """Write the event `order`'s new state raises (if any), in the caller's transaction."""
    kind = EVENT_TYPES.get(order.status)
    if kind is None:
        return
    if describe is None:
        raise ValueError(f"moving an order to {order.status} raises an event: describe it")
    _insert_event(conn, order, kind, describe(order).decode())


def _insert_event(conn: Connection, order: Order, kind: str, data: str) -> None:
    _INSERT_EVENT[conn.dialect.name].run(
        conn,
        {
            "order_id": order.id,
            "sequence": order.event_sequence,
            "type": kind,
            "occurred_at": order.updated_at,
            "data": data,
        },
    )


# --- the hot path's statements, built once ---------------------------------------------------------------
# Building a Core statement per call (and its cache key, to find the compiled form) was ~10 % of the order
# service's CPU per order. These are built at import: their cache key is memoised on the object, and the
# SET / VALUES columns come from the keys of the parameters given, so one object serves every shape of
# call (SQLAlchemy compiles each set of keys once). Bound names start with `b_`: a SET column's own name
# is reserved for its value.

# Reads of one order, on the driver's cursor (service_common.storage.DriverQuery).
_ORDER_BY_ID = DriverQuery(sa.select(orders).where(orders.c.id == sa.bindparam("b_id")))
_ORDER_BY_KEY = DriverQuery(
    sa.select(orders).where(
        orders.c.idempotency_scope == sa.bindparam("b_scope"), orders.c.idempotency_key == sa.bindparam("b_key")
    )
)
_LINES_OF_ORDER = DriverQuery(
    sa.select(order_lines).where(order_lines.c.order_id == sa.bindparam("b_order")).order_by(order_lines.c.line_no)
)
# The writes of the order path, on the driver's cursor of the transaction's connection (DriverStatement).
_EXPIRE_KEY = DriverStatement(
    orders.update()
    .where(
        orders.c.idempotency_scope == sa.bindparam("b_scope"),
        orders.c.idempotency_key == sa.bindparam("b_key"),
        orders.c.key_expires_at <= sa.bindparam("b_now", type_=UTCDateTime),
    )
    .values(idempotency_scope=None, idempotency_key=None)
)
_INSERT_ORDER = DriverStatement(orders.insert().returning(*orders.c))
_INSERT_LINES = DriverStatement(order_lines.insert())
# An order moves on only from the state it is expected to be in (the saga's conditional step); a move into
# a state that raises an event also counts it on the order row.
_MOVE_IF_EXPECTED = orders.update().where(
    orders.c.id == sa.bindparam("b_id"), orders.c.status == sa.bindparam("b_expected")
)
_COUNT_EVENT = {"event_sequence": orders.c.event_sequence + 1}
_MOVE = _MOVE_IF_EXPECTED.returning(*orders.c)
_MOVE_ORDER = DriverStatement(_MOVE)
_MOVE_ORDER_WITH_EVENT = DriverStatement(_MOVE.values(_COUNT_EVENT))
# confirm() needs back only the event's sequence: the rest of the row is what it wrote or what it was given.
_CONFIRM_ORDER = DriverStatement(_MOVE_IF_EXPECTED.values(_COUNT_EVENT).returning(orders.c.event_sequence))
_INSERT_EVENT = {
    "postgresql": DriverStatement(order_events.insert().values(tx=_PG_TX)),
    "sqlite": DriverStatement(order_events.insert()),  # tx: null
}
_PRICE_LINE = DriverStatement(
    order_lines.update()
    .where(order_lines.c.order_id == sa.bindparam("b_order"), order_lines.c.product_id == sa.bindparam("b_product"))
    .values(unit_price=sa.bindparam("b_price", type_=order_lines.c.unit_price.type))
)


# --- PostgreSQL: each write of the order path in one statement -----------------------------------------------
# Every statement is a round trip: on PostgreSQL it costs the service a wait on the socket (the GIL released
# and taken back) and the server a wake-up of its backend, about as much CPU as the statement's own work
# (docs/performance.md). So on PostgreSQL the order with its lines is written by one INSERT, and the move to
# confirmed, the lines' prices and its outbox event by one UPDATE, as data-modifying CTEs: one statement,
# so all or nothing within the batch's transaction as the separate statements were. SQLite runs in process,
# where a statement costs no round trip: it keeps the plain statements above, which say the same.


def _bound(table: sa.Table, *names: str) -> dict[str, Any]:
    """SET / VALUES of these columns, each bound by its own name (a CTE's statement is not compiled with
    the parameters' keys as the top-level one is, so its columns are named here)."""
    return {name: sa.bindparam(name, type_=table.c[name].type) for name in names}


_new_order = (
    orders.insert()
    .values(
        _bound(
            orders,
            "product_id",
            "quantity",
            "customer_id",
            "status",
            "created_at",
            "updated_at",
            "idempotency_scope",
            "idempotency_key",
            "request_fingerprint",
            "key_expires_at",
        )
    )
    .returning(*orders.c)
    .cte("new_order")
)
_new_lines = unnest_rows(("line_no", sa.Integer()), ("product", sa.String()), ("quantity", sa.BigInteger()))
_CREATE_AT_ONCE = DriverStatement(
    sa.select(_new_order).add_cte(
        order_lines.insert()
        .from_select(
            ["order_id", "line_no", "product_id", "quantity"],
            sa.select(_new_order.c.id, _new_lines.c.line_no, _new_lines.c.product, _new_lines.c.quantity),
        )
        .cte("new_lines")
    )
)

_confirmed = _MOVE.values(
    **_bound(orders, "status", "updated_at", "unit_price", "total_price", "response_status", "response_body"),
    claimed_until=sa.null(),
    **_COUNT_EVENT,
).cte("confirmed")
_prices = unnest_rows(("product", sa.String()), ("price", order_lines.c.unit_price.type))
_CONFIRM_AT_ONCE = DriverStatement(
    sa.select(_confirmed.c.event_sequence).add_cte(
        order_lines.update()
        .where(order_lines.c.order_id == _confirmed.c.id, order_lines.c.product_id == _prices.c.product)
        .values(unit_price=_prices.c.price)
        .cte("priced"),
        order_events.insert()
        .from_select(
            ["order_id", "sequence", "type", "occurred_at", "data", "tx"],
            sa.select(
                _confirmed.c.id,
                _confirmed.c.event_sequence,
                sa.literal(EVENT_TYPES[OrderStatus.CONFIRMED]),
                _confirmed.c.updated_at,
                sa.bindparam("b_data", type_=sa.Text()),
                sa.literal_column(str(_PG_TX), sa.BigInteger()),
            ),
        )
        .cte("confirmed_event"),
    )
)


def _lines(conn: Connection, rows: Sequence[sa.Row[Any]]) -> dict[int, tuple[OrderLine, ...]]:
    found = {
        owner: [OrderLine(line.product_id, line.quantity, line.unit_price) for line in lines]
        for owner, lines in lines_of(conn, order_lines, [r.id for r in rows]).items()
    }
    return {
        r.id: tuple(found[r.id]) if r.id in found else (OrderLine(r.product_id, r.quantity, r.unit_price),)
        for r in rows
    }


def _as_order(row: sa.Row[Any], lines: tuple[OrderLine, ...]) -> Order:
    values = {**row._mapping, "status": OrderStatus(row.status), "lines": lines}
    if all(line.unit_price is not None for line in lines):
        # The exact sum of the lines (SQLite keeps NUMERIC as a binary float: its column may have rounded).
        values["total_price"] = sum((line.line_price or Decimal(0) for line in lines), Decimal("0.00"))
    return Order(**values)


def _order(conn: Connection, row: sa.Row[Any] | None) -> Order | None:
    if row is None:
        return None
    return _as_order(row, _lines(conn, [row])[row.id])


def _orders(conn: Connection, rows: Sequence[sa.Row[Any]]) -> list[Order]:
    lines = _lines(conn, rows)
    return [_as_order(r, lines[r.id]) for r in rows]


# create_pending's parameters when the order has no Idempotency-Key (the statement binds every column).
_NO_KEY = dict.fromkeys(("idempotency_scope", "idempotency_key", "request_fingerprint", "key_expires_at"))


# --- reads ---------------------------------------------------------------------------------------------------


def _read_order(engine: Engine, row: sa.Row[Any] | None) -> Order | None:
    """The order of a row read outside a transaction, with its lines (as reading() would)."""
    if row is None:
        return None
    lines = tuple(
        OrderLine(x.product_id, x.quantity, x.unit_price) for x in _LINES_OF_ORDER.rows(engine, {"b_order": row.id})
    )
    return _as_order(row, lines or (OrderLine(row.product_id, row.quantity, row.unit_price),))


def get_order(engine: Engine, number: int) -> Order | None:
    return _read_order(engine, _ORDER_BY_ID.first(engine, {"b_id": number}))


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
        return _orders(conn, rows), total


def find_by_key(engine: Engine, scope: str, key: str) -> Order | None:
    return _read_order(engine, _ORDER_BY_KEY.first(engine, {"b_scope": scope, "b_key": key}))


# --- writes --------------------------------------------------------------------------------------------------


def create_pending(
    engine: Engine,
    *,
    lines: Sequence[Line],
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
        "product_id": lines[0].product_id,
        "quantity": lines[0].quantity,
        "customer_id": customer_id,
        "status": OrderStatus.PENDING.value,
        "created_at": now,
        "updated_at": now,
    }
    if key is not None:
        scope, idem, fingerprint = key
        values.update(
            idempotency_scope=scope, idempotency_key=idem, request_fingerprint=fingerprint, key_expires_at=now + key_ttl
        )

    def work(conn: Connection) -> Order:
        if key is not None:
            _EXPIRE_KEY.run(conn, {"b_scope": key[0], "b_key": key[1], "b_now": now})
        if conn.dialect.name == "postgresql":
            row = _CREATE_AT_ONCE.one(
                conn,
                {
                    **_NO_KEY,
                    **values,
                    "b_line_no": list(range(len(lines))),
                    "b_product": [line.product_id for line in lines],
                    "b_quantity": [line.quantity for line in lines],
                },
            )
        else:
            row = _INSERT_ORDER.one(conn, values)
            _INSERT_LINES.run(
                conn,
                [
                    {"order_id": row.id, "line_no": n, "product_id": line.product_id, "quantity": line.quantity}
                    for n, line in enumerate(lines)
                ],
            )
        return _as_order(row, tuple(OrderLine(line.product_id, line.quantity, None) for line in lines))

    return written(engine, work)


def transition(
    engine: Engine,
    number: int,
    expected: OrderStatus,
    new: OrderStatus,
    *,
    describe: Describe | None = None,
    **values: Any,
) -> Order | None:
    """Move an order from an expected state to `new`; the order as written, or None if it was not there.

    A move into a state that raises an event writes it in the same transaction (`describe` gives its data).
    """
    params: dict[str, Any] = {"b_id": number, "b_expected": expected.value, "status": new.value, "updated_at": utcnow()}
    params.update(claimed_until=None, **values)

    def work(conn: Connection) -> Order | None:
        order = _order(conn, _move_order(new).first(conn, params))
        if order is not None:
            _record_event(conn, order, describe)
        return order

    return written(engine, work)


def confirm(
    engine: Engine,
    order: Order,
    prices: dict[str, Decimal],
    *,
    describe: Describe,
    response_status: int,
    response_body: str,
) -> bool:
    """pending → confirmed with each line's price, the answer replays give and its event, in one
    transaction; False if not pending. (Nothing is read back but the event's sequence: the caller knows
    the rest: the whole row read back into an Order cost the order service 4 % of its CPU per order on
    PostgreSQL, ~1 % on SQLite.)"""
    lines = tuple(replace(line, unit_price=prices[line.product_id]) for line in order.lines)
    # The order as this step writes it: its event's data is described here, before the transaction, so the
    # batch's transaction does not wait for it (what the API shows of an order is all given here or unchanged
    # since it was created).
    expected = replace(
        order,
        status=OrderStatus.CONFIRMED,
        updated_at=utcnow(),
        claimed_until=None,
        unit_price=lines[0].unit_price,
        total_price=sum((line.line_price or Decimal(0) for line in lines), Decimal("0.00")),
        response_status=response_status,
        response_body=response_body,
        event_sequence=order.event_sequence + 1,
        lines=lines,
    )
    written_columns = ("updated_at", "claimed_until", "unit_price", "total_price", "response_status", "response_body")
    params = {
        "b_id": order.id,
        "b_expected": OrderStatus.PENDING.value,
        "status": OrderStatus.CONFIRMED.value,
        **{name: getattr(expected, name) for name in written_columns},
    }
    data = describe(expected).decode()
    kind = EVENT_TYPES[OrderStatus.CONFIRMED]

    def work(conn: Connection) -> bool:
        if conn.dialect.name == "postgresql":
            row = _CONFIRM_AT_ONCE.first(
                conn,
                {
                    **params,
                    "b_product": [line.product_id for line in lines],
                    "b_price": [line.unit_price for line in lines],
                    "b_data": data,
                },
            )
            return row is not None
        row = _CONFIRM_ORDER.first(conn, params)
        if row is None:
            return False
        # An order written before carts has no line rows: none updated.
        _PRICE_LINE.run(
            conn,
            [
                {"b_order": order.id, "b_product": line.product_id, "b_price": prices[line.product_id]}
                for line in order.lines
            ],
        )
        _insert_event(conn, replace(expected, event_sequence=row.event_sequence), kind, data)
        return True

    return written(engine, work)


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
        query = skip_locked(conn, sa.select(orders.c.id).where(*stale).order_by(orders.c.id).limit(limit))
        ids = [r.id for r in conn.execute(query)]
        if not ids:
            return []
        return _orders(
            conn,
            conn.execute(
                orders.update()
                .where(orders.c.id.in_(ids), *stale)
                .values(claimed_until=now + lease)
                .returning(*orders.c)
            ).all(),
        )


def orders_for_audit(engine: Engine) -> list[OrderSummary]:
    with snapshot(engine) as conn:
        rows = conn.execute(
            sa.select(orders.c.id, orders.c.product_id, orders.c.quantity, orders.c.status, orders.c.updated_at)
        ).all()
        found: dict[int, list[Line]] = {}
        for line in conn.execute(sa.select(order_lines).order_by(order_lines.c.order_id, order_lines.c.line_no)):
            found.setdefault(line.order_id, []).append(Line(line.product_id, line.quantity))
    return [
        OrderSummary(
            r.id, tuple(found.get(r.id) or [Line(r.product_id, r.quantity)]), OrderStatus(r.status), r.updated_at
        )
        for r in rows
    ]


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
