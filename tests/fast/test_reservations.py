"""Inventory's reservation rules, in-process: a reserve is idempotent by order, a release happens once,
and a release before any reserve leaves a tombstone that refuses a late reserve. (Moved from
tests/test_reservations.py, which keeps the parallel releases.)"""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse

from tests.inprocess import ADMIN, SERVICE, Services


def _post(apps: Services, path: str, body: dict[str, Any]) -> TestResponse:
    return apps.inventory.test_client().post(path, json=body, headers=SERVICE)


def test_reserve_retry_is_answered_again_without_taking_more(apps: Services) -> None:
    product = apps.new_product(10)
    body = {"order_id": "R-retry-1" + product, "product_id": product, "quantity": 3}
    first = _post(apps, "/inventory/reserve", body)
    again = _post(apps, "/inventory/reserve", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json == again.json
    assert apps.stock(product)[0] == 7


def test_reserve_with_other_quantity_for_the_same_order_conflicts(apps: Services) -> None:
    product = apps.new_product(10)
    order_id = "R-mismatch-" + product
    _post(apps, "/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 3})
    r = _post(apps, "/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 4})
    assert r.status_code == 409 and r.json["error"]["code"] == "reservation_mismatch"
    assert apps.stock(product)[0] == 7


def test_release_with_mismatched_details_is_refused_and_changes_nothing(apps: Services) -> None:
    product = apps.new_product(10)
    order_id = "R-wrong-" + product
    _post(apps, "/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 2})
    r = _post(apps, "/inventory/release", {"order_id": order_id, "product_id": product, "quantity": 3})
    assert r.status_code == 409
    r = _post(apps, "/inventory/release", {"order_id": order_id, "product_id": "P001"})
    assert r.status_code == 409
    assert apps.stock(product)[1] == 2
    assert apps.reservation(order_id).json["status"] == "held"


def test_release_before_reserve_leaves_a_tombstone_that_refuses_a_late_reserve(apps: Services) -> None:
    product = apps.new_product(10)
    order_id = "R-late-" + product
    r = _post(apps, "/inventory/release", {"order_id": order_id})
    assert r.status_code == 200 and r.json["status"] == "released" and r.json["product_id"] is None
    late = _post(apps, "/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 1})
    assert late.status_code == 409 and late.json["error"]["code"] == "released"
    assert apps.stock(product)[0] == 10


def test_releasing_unknown_orders_never_adds_stock(apps: Services) -> None:
    product = apps.new_product(5)
    for i in range(5):
        _post(apps, "/inventory/release", {"order_id": f"R-ghost-{i}-{product}", "product_id": product})
    assert apps.stock(product) == (5, 0)


def test_commit_turns_held_units_into_a_sale_once(apps: Services) -> None:
    product = apps.new_product(10)
    order_id = "R-sale-" + product
    _post(apps, "/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 4})
    assert _post(apps, "/inventory/commit", {"order_id": order_id}).status_code == 200
    assert _post(apps, "/inventory/commit", {"order_id": order_id}).json["status"] == "committed"
    assert apps.stock(product) == (6, 0)
    r = _post(apps, "/inventory/release", {"order_id": order_id})
    assert r.status_code == 409 and apps.stock(product)[0] == 6


def test_restock_adds_units_and_price_changes_do_not_touch_placed_orders(apps: Services) -> None:
    product = apps.new_product(1, price=10.0)
    order = apps.place(product, 1).json
    assert order["unit_price"] == 10.0
    client = apps.inventory.test_client()
    r = client.patch(f"/inventory/{product}", json={"price": 12.5}, headers=ADMIN)
    assert r.status_code == 200 and r.json["price"] == 12.5
    restocked = client.post(f"/inventory/{product}/restock", json={"quantity": 9}, headers=ADMIN)
    assert restocked.json["available_quantity"] == 9
    assert apps.order_json(order["order_id"])["unit_price"] == 10.0
    assert apps.place(product, 2).json["total_price"] == 25.0


def test_a_product_cannot_take_the_name_of_a_fixed_path(apps: Services) -> None:
    r = apps.inventory.test_client().post(
        "/inventory", json={"product_id": "audit", "name": "Shadowed", "price": 1, "quantity": 1}, headers=ADMIN
    )
    assert r.status_code == 422 and r.json["error"]["code"] == "validation_error"


# --- orders (moved from tests/test_concurrency.py, which keeps the parallel ones) -----------------------------


def test_sequential_cancels_release_stock_once(apps: Services) -> None:
    product = apps.new_product(10)
    order = apps.place(product, 3).json
    first, second = apps.cancel(order["order_id"]), apps.cancel(order["order_id"])
    assert first.status_code == 200 and second.status_code == 200
    assert first.json == second.json
    assert apps.stock(product)[0] == 10


def test_refused_orders_cannot_be_cancelled_and_are_not_listed(apps: Services) -> None:
    product = apps.new_product(1)
    refused = apps.place(product, 5)
    assert refused.status_code == 409
    client = apps.order.test_client()
    rejected = [
        o for o in client.get("/orders?status=rejected&limit=1000").json["orders"] if o["product_id"] == product
    ]
    assert len(rejected) == 1
    assert rejected[0]["order_id"] not in {o["order_id"] for o in client.get("/orders?limit=1000").json["orders"]}
    r = apps.cancel(rejected[0]["order_id"])
    assert r.status_code == 409 and r.json["error"]["code"] == "not_cancellable"
    assert apps.stock(product)[0] == 1


def test_list_total_count_excludes_refused_orders(apps: Services) -> None:
    product = apps.new_product(1)
    apps.place(product, 1)
    apps.place(product, 5)  # rejected
    everything = apps.order.test_client().get("/orders?limit=1000").json
    assert everything["total_count"] == len(everything["orders"]) == 1
    assert not {o["status"] for o in everything["orders"]} & {"rejected", "failing", "failed"}
