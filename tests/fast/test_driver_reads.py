"""The hot reads on the driver's cursor (service_common.storage.DriverQuery) give exactly the rows SQLAlchemy's
Connection.execute gives for the same statement, types included (Decimal prices, UTC datetimes), on both
engines; and a read of nothing is None."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from inventory_service import storage as inventory_storage
from order_service import storage as order_storage
from service_common.storage import DriverQuery, reading
from tests.inprocess import Services


def _same_rows(engine: sa.Engine, statement: sa.Select[object], params: dict[str, object]) -> None:
    with reading(engine) as conn:
        expected = [tuple(row) for row in conn.execute(statement, params)]
    got = DriverQuery(statement).rows(engine, params)
    assert [tuple(row) for row in got] == expected
    assert [[type(v) for v in row] for row in got] == [[type(v) for v in row] for row in expected]
    assert [row._mapping.keys() for row in got] == [list(statement.selected_columns.keys())] * len(expected)


def test_driver_reads_of_a_product_and_an_order_match_sqlalchemy(apps: Services) -> None:
    product = apps.new_product(10)
    placed = apps.place(product, 2)
    assert placed.status_code == 201
    number = int(placed.json["order_id"].removeprefix("ORD"))

    products = inventory_storage.products
    inventory = apps.inventory.extensions["engine"]
    by_id = sa.select(products).where(products.c.product_id == sa.bindparam("b_id"))
    _same_rows(inventory, by_id, {"b_id": product})
    assert DriverQuery(by_id).first(inventory, {"b_id": "no-such-product"}) is None

    orders, lines = order_storage.orders, order_storage.order_lines
    _same_rows(apps.order_engine, sa.select(orders).where(orders.c.id == sa.bindparam("b_id")), {"b_id": number})
    of_order = sa.select(lines).where(lines.c.order_id == sa.bindparam("b_order")).order_by(lines.c.line_no)
    _same_rows(apps.order_engine, of_order, {"b_order": number})
    assert order_storage.get_order(apps.order_engine, number) is not None


def test_a_driver_read_on_a_database_that_cannot_be_reached_is_an_operational_error() -> None:
    """What the services answer 503 database_unavailable for, as for any other statement (was a bare
    psycopg error, answered 500, when no pooled connection was left to reuse)."""
    from service_common.storage import create_db_engine

    engine = create_db_engine("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        with pytest.raises(sa.exc.OperationalError):
            DriverQuery(sa.select(inventory_storage.products)).rows(engine, {})
    finally:
        engine.dispose()
