"""Writes on the driver's cursor of a transaction (service_common.storage.DriverStatement) store exactly what
SQLAlchemy's Connection.execute stores for the same statement and parameters (UTC times, decimals, nulls;
SQLite keeps times as strings), read back equal, and commit or roll back with the caller's transaction;
a broken constraint is SQLAlchemy's IntegrityError, as the callers expect."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from inventory_service import storage as inventory_storage
from order_service import storage as order_storage
from service_common.storage import DriverStatement, writing
from tests.inprocess import Services

orders, order_lines = order_storage.orders, order_storage.order_lines

# A time on a whole second (SQLite's string must still say .000000) in another zone than UTC, and one with
# microseconds.
WHOLE = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
FINE = dt.datetime(2026, 3, 4, 3, 6, 7, 123456, tzinfo=dt.UTC)


def _order(key: str) -> dict[str, Any]:
    return {
        "product_id": "p-1",
        "quantity": 3,
        "customer_id": "c-1",
        "status": "confirmed",
        "unit_price": Decimal("12.34"),
        "total_price": Decimal("37.02"),
        "created_at": WHOLE,
        "updated_at": FINE,
        "cancelled_at": None,
        "idempotency_scope": "scope",
        "idempotency_key": key,
        "key_expires_at": WHOLE,
    }


def _same(row: sa.Row[Any]) -> dict[str, Any]:
    """What two orders written alike share: all but their id and idempotency key."""
    return {k: v for k, v in row._mapping.items() if k not in ("id", "idempotency_key")}


def _stored(conn: sa.Connection, table: sa.Table, where: str) -> list[tuple[Any, ...]]:
    """The rows as the database keeps them, through no SQLAlchemy type (SQLite: strings and floats)."""
    names = ", ".join(c.name for c in table.c if c.name not in ("id", "order_id", "idempotency_key"))
    return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {names} FROM {table.name} WHERE {where}")]  # noqa: S608


def test_rows_written_on_the_driver_cursor_are_the_rows_sqlalchemy_writes(apps: Services) -> None:
    engine = apps.order_engine
    insert = orders.insert().returning(*orders.c)
    lines = [{"line_no": n, "product_id": f"p-{n}", "quantity": n + 1} for n in range(3)]
    price = order_lines.update().where(
        order_lines.c.order_id == sa.bindparam("b_order"), order_lines.c.product_id == sa.bindparam("b_product")
    )
    with writing(engine) as conn:
        by_sqlalchemy = conn.execute(insert, _order("a")).one()
        by_driver = DriverStatement(insert).one(conn, _order("b"))
        assert by_driver.id != by_sqlalchemy.id
        assert list(by_driver._mapping.keys()) == list(by_sqlalchemy._mapping.keys())
        assert _same(by_driver) == _same(by_sqlalchemy)
        assert [type(v) for v in by_driver] == [type(v) for v in by_sqlalchemy]
        assert by_driver.created_at == WHOLE and by_driver.unit_price == Decimal("12.34")

        # executemany: an INSERT, then an UPDATE of each line's price (several parameter sets).
        conn.execute(order_lines.insert(), [{"order_id": by_sqlalchemy.id, **x} for x in lines])
        assert DriverStatement(order_lines.insert()).run(conn, [{"order_id": by_driver.id, **x} for x in lines]) == 3
        priced = [{"b_product": x["product_id"], "unit_price": Decimal("0.10") * x["quantity"]} for x in lines]
        conn.execute(price, [{"b_order": by_sqlalchemy.id, **x} for x in priced])
        assert DriverStatement(price).run(conn, [{"b_order": by_driver.id, **x} for x in priced]) == 3

    with engine.connect() as conn:
        assert _stored(conn, orders, f"id = {by_driver.id}") == _stored(conn, orders, f"id = {by_sqlalchemy.id}")
        assert _stored(conn, order_lines, f"order_id = {by_driver.id}") == _stored(
            conn, order_lines, f"order_id = {by_sqlalchemy.id}"
        )
        if conn.dialect.name == "sqlite":
            query = f"SELECT created_at FROM orders WHERE id = {by_driver.id}"  # noqa: S608
            (kept,) = conn.exec_driver_sql(query).one()
            assert kept == "2026-03-04 03:06:07.000000"
        read = {
            r.id: r for r in conn.execute(sa.select(orders).where(orders.c.id.in_([by_driver.id, by_sqlalchemy.id])))
        }
    assert tuple(read[by_driver.id]) == tuple(by_driver)
    assert _same(read[by_driver.id]) == _same(read[by_sqlalchemy.id])
    assert read[by_driver.id].cancelled_at is None and read[by_driver.id].updated_at == FINE


def test_a_driver_read_in_a_transaction_expands_its_in_list_and_locks_as_sqlalchemy_does(apps: Services) -> None:
    products = [apps.new_product(5, price=2.5), apps.new_product(7)]
    lock = inventory_storage._LOCK
    with writing(apps.inventory.extensions["engine"]) as conn:
        got = lock.rows(conn, {"ids": sorted(products)})
        expected = conn.execute(lock._statement, {"ids": sorted(products)}).all()
    assert [tuple(r) for r in got] == [tuple(r) for r in expected]
    assert [type(v) for r in got for v in r] == [type(v) for r in expected for v in r]


def test_a_broken_constraint_on_the_driver_cursor_is_an_integrity_error_and_rolls_back_the_transaction(
    apps: Services,
) -> None:
    engine = apps.order_engine
    insert = DriverStatement(orders.insert().returning(orders.c.id))
    with pytest.raises(sa.exc.IntegrityError), writing(engine) as conn:
        first = insert.one(conn, _order("same"))
        insert.one(conn, _order("same"))  # the same idempotency key: uq_orders_idempotency
    with engine.connect() as conn:
        assert conn.execute(sa.select(orders.c.id).where(orders.c.id == first.id)).first() is None
    # The connection went back to the pool fit for the next transaction, which commits.
    with writing(engine) as conn:
        kept = insert.one(conn, _order("same"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(orders.c.idempotency_key).where(orders.c.id == kept.id)).scalar() == "same"


def test_a_naive_time_is_refused_on_the_driver_cursor_as_by_sqlalchemy(apps: Services) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), writing(apps.order_engine) as conn:
        DriverStatement(orders.insert()).run(conn, {**_order("naive"), "created_at": dt.datetime(2026, 1, 1)})
