"""Fulfilment and cancellation, in-process: the state machine's steps from confirmed, each answered
once, and with inventory unreachable left `fulfilling` / `cancelling` (202) for the worker to finish.
(The first three moved from tests/test_fulfilment.py, which keeps the one with a killed inventory process.)"""

from __future__ import annotations

from order_service.worker import run_pass
from tests.inprocess import ADMIN, SERVICE, Services


def test_fulfil_sells_the_units_and_ends_cancelling(apps: Services) -> None:
    product = apps.new_product(10)
    placed = apps.place(product, 3)
    assert placed.status_code == 201, placed.text
    order = placed.json

    r = apps.fulfil(order["order_id"])
    assert r.status_code == 200, r.text
    done = r.json
    assert done["status"] == "fulfilled"
    assert "fulfilled_at" in done
    assert {k: v for k, v in done.items() if k not in ("status", "fulfilled_at")} == {
        k: v for k, v in order.items() if k != "status"
    }
    assert apps.order_json(order["order_id"]) == done
    # The units are sold: they leave `reserved`, and `available` does not get them back.
    assert apps.stock(product) == (7, 0)

    r = apps.cancel(order["order_id"])
    assert r.status_code == 409, r.text
    assert r.json["error"]["code"] == "not_cancellable"
    # Fulfilling again answers the same order and sells nothing more.
    again = apps.fulfil(order["order_id"])
    assert again.status_code == 200, again.text
    assert again.json == done
    assert apps.stock(product) == (7, 0)
    res = apps.reservation(order["order_id"])
    assert res.status_code == 200, res.text
    assert (res.json["status"], res.json["quantity"]) == ("committed", 3)
    apps.age_orders(60)
    assert apps.audit().status_code == 200


def test_only_a_confirmed_order_can_be_fulfilled(apps: Services) -> None:
    product = apps.new_product(10)
    order = apps.place(product, 2).json
    assert apps.cancel(order["order_id"]).status_code == 200
    r = apps.fulfil(order["order_id"])
    assert r.status_code == 409, r.text
    assert r.json["error"]["code"] == "not_fulfillable"
    assert apps.fulfil("ORD99999999").status_code == 404
    assert apps.stock(product) == (10, 0)


def test_fulfil_needs_the_admin_token(apps: Services) -> None:
    product = apps.new_product(10)
    order = apps.place(product, 2).json
    for headers in ({}, SERVICE, {"Authorization": "Bearer wrong"}):
        r = apps.order.test_client().post(f"/orders/{order['order_id']}/fulfil", headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="internal"'
    assert apps.order_json(order["order_id"])["status"] == "confirmed"
    assert apps.order.test_client().post(f"/orders/{order['order_id']}/fulfil", headers=ADMIN).status_code == 200


def test_cancel_returns_the_stock_once_and_answers_the_same_again(apps: Services) -> None:
    product = apps.new_product(10)
    order = apps.place(product, 4).json
    first = apps.cancel(order["order_id"])
    assert first.status_code == 200, first.text
    assert first.json["status"] == "cancelled" and "cancelled_at" in first.json
    assert apps.stock(product) == (10, 0)
    again = apps.cancel(order["order_id"])
    assert (again.status_code, again.json) == (200, first.json)
    assert apps.stock(product) == (10, 0)
    assert apps.cancel("ORD99999999").status_code == 404
    assert apps.cancel("not-an-order").json["error"]["code"] == "order_not_found"


def test_fulfil_while_inventory_is_down_is_finished_by_the_worker(apps: Services) -> None:
    product = apps.new_product(10)
    order = apps.place(product, 4).json

    apps.transport.down = True
    r = apps.fulfil(order["order_id"])
    assert r.status_code == 202, r.text
    assert r.json["status"] == "fulfilling"
    # Still fulfilling: it can be neither cancelled nor fulfilled twice meanwhile.
    assert apps.cancel(order["order_id"]).status_code == 409
    again = apps.fulfil(order["order_id"])
    assert (again.status_code, again.json["status"]) == (202, "fulfilling")

    apps.transport.down = False
    apps.age_orders(60)
    assert run_pass(apps.saga) == {"fulfilled": 1}
    done = apps.order_json(order["order_id"])
    assert done["status"] == "fulfilled" and "fulfilled_at" in done
    assert apps.stock(product) == (6, 0)


def test_cancel_while_inventory_is_down_is_finished_by_the_worker(apps: Services) -> None:
    product = apps.new_product(10)
    order = apps.place(product, 4).json
    apps.transport.down = True
    r = apps.cancel(order["order_id"])
    assert (r.status_code, r.json["status"]) == (202, "cancelling")
    apps.age_orders(60)
    assert run_pass(apps.saga) == {"deferred": 1}  # still down: the worker tries again later

    apps.transport.down = False
    apps.age_orders(60)
    with apps.order_engine.begin() as conn:  # the deferred order's lease has not run out yet
        conn.exec_driver_sql("UPDATE orders SET claimed_until = NULL")
    assert run_pass(apps.saga) == {"cancelled": 1}
    assert apps.order_json(order["order_id"])["status"] == "cancelled"
    assert apps.stock(product) == (10, 0)
