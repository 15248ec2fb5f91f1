"""Inventory's reservation rules under parallel requests to a real server: a release happens once. (The
sequential rules run in-process: tests/fast/test_reservations.py.)"""

from __future__ import annotations

from tests.stack_client import Api, parallel


def test_release_twice_returns_stock_once(api: Api) -> None:
    product = api.new_product(10)
    order_id = "R-twice-" + product
    api.inventory_post("/inventory/reserve", {"order_id": order_id, "product_id": product, "quantity": 5})
    responses = parallel(10, lambda _: api.inventory_post("/inventory/release", {"order_id": order_id}))
    assert {r.status_code for r in responses} == {200}
    assert all(r.json()["status"] == "released" for r in responses)
    stock = api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (10, 0)
