"""The recovery worker's branches, in-process: each test writes the state a crash leaves behind (the order
row and inventory's reservation as they were when the process died), then runs one worker pass. The
process tests (tests/test_crash_recovery.py) still crash real processes at each fail point."""

from __future__ import annotations

import datetime as dt

from order_service import storage
from order_service.domain import Line, Order
from order_service.worker import run_pass
from tests.inprocess import SERVICE, Services


def _pending(apps: Services, product: str, quantity: int) -> Order:
    """The order row a request writes before it asks inventory for anything."""
    return storage.create_pending(
        apps.order_engine,
        lines=[Line(product, quantity)],
        customer_id="C1",
        key=None,
        key_ttl=dt.timedelta(1),
    )


def _reserve(apps: Services, order: Order, product: str, quantity: int) -> None:
    body = {"order_id": order.order_id, "product_id": product, "quantity": quantity}
    r = apps.inventory.test_client().post("/inventory/reserve", json=body, headers=SERVICE)
    assert r.status_code == 201, r.text


def test_a_young_unfinished_order_is_left_to_its_request(apps: Services) -> None:
    product = apps.new_product(5)
    _pending(apps, product, 1)
    assert run_pass(apps.saga) == {}


def test_crash_after_pending_fails_the_order_and_leaves_a_tombstone(apps: Services) -> None:
    product = apps.new_product(5)
    order = _pending(apps, product, 2)
    apps.age_orders(60)
    assert run_pass(apps.saga) == {"failed": 1}
    assert apps.order.test_client().get("/orders?status=failed").json["total_count"] == 1
    tombstone = apps.reservation(order.order_id).json
    assert (tombstone["status"], tombstone["product_id"]) == ("released", None)
    # A reserve still in flight for it can never hold stock now.
    late = {"order_id": order.order_id, "product_id": product, "quantity": 2}
    r = apps.inventory.test_client().post("/inventory/reserve", json=late, headers=SERVICE)
    assert (r.status_code, r.json["error"]["code"]) == (409, "released")
    assert apps.stock(product) == (5, 0)


def test_crash_after_reserve_confirms_the_order_at_the_reserved_price(apps: Services) -> None:
    product = apps.new_product(5, price=4.0)
    order = _pending(apps, product, 2)
    _reserve(apps, order, product, 2)
    apps.age_orders(60)
    assert run_pass(apps.saga) == {"confirmed": 1}
    confirmed = apps.order_json(order.order_id)
    assert (confirmed["status"], confirmed["unit_price"], confirmed["total_price"]) == ("confirmed", 4.0, 8.0)
    assert apps.stock(product) == (3, 2)


def test_crash_while_failing_finishes_the_release(apps: Services) -> None:
    product = apps.new_product(5)
    order = _pending(apps, product, 1)
    apps.set_status(order.order_id, "failing")
    apps.age_orders(60)
    assert run_pass(apps.saga) == {"failed": 1}
    assert apps.reservation(order.order_id).json["status"] == "released"


def test_crash_while_cancelling_returns_the_stock(apps: Services) -> None:
    product = apps.new_product(5)
    order_id = apps.place(product, 3).json["order_id"]
    apps.set_status(order_id, "cancelling")  # the transition was written, the release never sent
    apps.age_orders(60)
    assert run_pass(apps.saga) == {"cancelled": 1}
    assert apps.order_json(order_id)["status"] == "cancelled"
    assert apps.stock(product) == (5, 0)


def test_crash_while_fulfilling_sells_the_units(apps: Services) -> None:
    product = apps.new_product(5)
    order_id = apps.place(product, 3).json["order_id"]
    apps.set_status(order_id, "fulfilling")
    apps.age_orders(60)
    assert run_pass(apps.saga) == {"fulfilled": 1}
    assert apps.order_json(order_id)["status"] == "fulfilled"
    assert apps.stock(product) == (2, 0)
    assert apps.reservation(order_id).json["status"] == "committed"


def test_inventory_down_defers_recovery_until_it_is_back(apps: Services) -> None:
    product = apps.new_product(5)
    order = _pending(apps, product, 1)
    _reserve(apps, order, product, 1)
    apps.age_orders(60)
    apps.transport.down = True
    assert run_pass(apps.saga) == {"deferred": 1}
    # The claim is a lease: the same order is not tried again until it runs out.
    assert run_pass(apps.saga) == {}
    apps.transport.down = False
    with apps.order_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET claimed_until = NULL")
    assert run_pass(apps.saga) == {"confirmed": 1}
