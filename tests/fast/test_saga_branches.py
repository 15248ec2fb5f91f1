"""Each branch of placing an order, in-process: confirmed, rejected (unknown product, not enough stock),
failed (inventory unreachable, or refusing us), and a lost answer retried."""

from __future__ import annotations

from pathlib import Path

from tests.inprocess import Services, Templates, services


def test_an_order_is_confirmed_with_its_prices_and_holds_the_stock(apps: Services) -> None:
    product = apps.new_product(10, price=2.5)
    r = apps.place(product, 3, "C1")
    assert r.status_code == 201, r.text
    order = r.json
    assert order["status"] == "confirmed"
    assert (order["unit_price"], order["total_price"], order["customer_id"]) == (2.5, 7.5, "C1")
    assert apps.order_json(order["order_id"]) == order
    assert apps.stock(product) == (7, 3)
    held = apps.reservation(order["order_id"]).json
    assert (held["status"], held["quantity"], held["product_id"]) == ("held", 3, product)


def test_an_unknown_product_is_rejected_404(apps: Services) -> None:
    r = apps.place("NOPE", 1)
    assert r.status_code == 404, r.text
    assert r.json["error"]["code"] == "product_not_found"
    rejected = apps.order.test_client().get("/orders?status=rejected").json
    assert rejected["total_count"] == 1
    # Refused orders are kept for the record, not listed as orders.
    assert apps.order.test_client().get("/orders").json["total_count"] == 0


def test_not_enough_stock_is_rejected_409_and_holds_nothing(apps: Services) -> None:
    product = apps.new_product(2)
    r = apps.place(product, 3)
    assert r.status_code == 409, r.text
    assert r.json == {
        "error": {
            "code": "insufficient_stock",
            "message": f"Only 2 units of {product} are available; 3 requested.",
            "details": [{"product_id": product, "requested": 3, "available": 2}],
        }
    }
    assert apps.stock(product) == (2, 0)


def test_inventory_down_fails_the_order_503_with_retry_after(apps: Services) -> None:
    product = apps.new_product(5)
    apps.transport.down = True
    r = apps.place(product, 1)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "2"
    assert r.json["error"]["code"] == "inventory_unavailable"
    # Recorded as failing: the release that would make it failed could not reach inventory either.
    assert apps.order.test_client().get("/orders?status=failing").json["total_count"] == 1
    apps.transport.down = False
    assert apps.stock(product) == (5, 0)


def test_a_lost_reserve_answer_is_retried_and_confirms_once(apps: Services) -> None:
    product = apps.new_product(5)
    apps.transport.lose_answers = 1  # inventory reserves, the answer never arrives
    r = apps.place(product, 2)
    assert r.status_code == 201, r.text
    assert apps.transport.calls.count("POST /inventory/reserve") == 2
    assert apps.stock(product) == (3, 2)


def test_inventory_refusing_our_token_fails_the_order(templates: Templates, tmp_path: Path) -> None:
    """A 401 from inventory is our fault, not the client's: the order fails (503), it is not rejected."""
    with services(templates, tmp_path, {"service_token": "not-the-service-token"}) as apps:
        product = apps.new_product(5)
        r = apps.place(product, 1)
        assert r.status_code == 503, r.text
        assert r.json["error"]["code"] == "inventory_unavailable"
        assert apps.stock(product) == (5, 0)
