"""Inventory's reservation rules over HTTP: a reserve is idempotent by order, a release happens once,
and a release before any reserve leaves a tombstone that refuses a late reserve."""

from __future__ import annotations

from tests.conftest import Api, parallel


def test_reserve_retry_is_answered_again_without_taking_more(api: Api) -> None:
    product = api.new_product(10)
    body = {"order_id": "R-retry-1" + product, "product_id": product, "quantity": 3}
    first = api.inventory_post("/inventory/reserve", body)
    again = api.inventory_post("/inventory/reserve", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert api.product(product)["available_quantity"] == 7


def test_reserve_with_other_quantity_for_the_same_order_conflicts(api: Api) -> None:
    product = api.new_product(10)
    order_id = "R-mismatch-" + product
    api.inventory_post("/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 3})
    r = api.inventory_post("/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 4})
    assert r.status_code == 409 and r.json()["error"]["code"] == "reservation_mismatch"
    assert api.product(product)["available_quantity"] == 7


def test_release_twice_returns_stock_once(api: Api) -> None:
    product = api.new_product(10)
    order_id = "R-twice-" + product
    api.inventory_post("/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 5})
    responses = parallel(10, lambda _: api.inventory_post("/inventory/release", {"order_id": order_id}))
    assert {r.status_code for r in responses} == {200}
    assert all(r.json()["status"] == "released" for r in responses)
    stock = api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (10, 0)


def test_release_with_mismatched_details_is_refused_and_changes_nothing(api: Api) -> None:
    product = api.new_product(10)
    order_id = "R-wrong-" + product
    api.inventory_post("/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 2})
    r = api.inventory_post("/inventory/release", {"order_id": order_id, "product_id": product, "quantity": 3})
    assert r.status_code == 409
    r = api.inventory_post("/inventory/release", {"order_id": order_id, "product_id": "P001"})
    assert r.status_code == 409
    assert api.product(product)["reserved_quantity"] == 2
    assert api.reservation(order_id).json()["status"] == "held"


def test_release_before_reserve_leaves_a_tombstone_that_refuses_a_late_reserve(api: Api) -> None:
    product = api.new_product(10)
    order_id = "R-late-" + product
    r = api.inventory_post("/inventory/release", {"order_id": order_id})
    assert r.status_code == 200 and r.json()["status"] == "released" and r.json()["product_id"] is None
    late = api.inventory_post("/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 1})
    assert late.status_code == 409 and late.json()["error"]["code"] == "released"
    assert api.product(product)["available_quantity"] == 10


def test_releasing_unknown_orders_never_adds_stock(api: Api) -> None:
    product = api.new_product(5)
    for i in range(5):
        api.inventory_post("/inventory/release", {"order_id": f"R-ghost-{i}-{product}", "product_id": product})
    stock = api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (5, 0)


def test_commit_turns_held_units_into_a_sale_once(api: Api) -> None:
    product = api.new_product(10)
    order_id = "R-sale-" + product
    api.inventory_post("/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 4})
    assert api.inventory_post("/inventory/commit", {"order_id": order_id}).status_code == 200
    assert api.inventory_post("/inventory/commit", {"order_id": order_id}).json()["status"] == "committed"
    stock = api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (6, 0)
    r = api.inventory_post("/inventory/release", {"order_id": order_id})
    assert r.status_code == 409 and api.product(product)["available_quantity"] == 6


def test_restock_adds_units_and_price_changes_do_not_touch_placed_orders(api: Api) -> None:
    product = api.new_product(1, price=10.0)
    order = api.place(product, 1).json()
    assert order["unit_price"] == 10.0
    r = api.http.patch(f"{api.inventory_url}/inventory/{product}", json={"price": 12.5}, headers=api.admin, timeout=10)
    assert r.status_code == 200 and r.json()["price"] == 12.5
    restocked = api.http.post(
        f"{api.inventory_url}/inventory/{product}/restock", json={"quantity": 9}, headers=api.admin, timeout=10
    )
    assert restocked.json()["available_quantity"] == 9
    assert api.order(order["order_id"])["unit_price"] == 10.0
    assert api.place(product, 2).json()["total_price"] == 25.0


def test_a_product_cannot_take_the_name_of_a_fixed_path(api: Api) -> None:
    r = api.http.post(
        f"{api.inventory_url}/inventory",
        json={"product_id": "audit", "name": "Shadowed", "price": 1, "quantity": 1},
        headers=api.admin,
        timeout=10,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
