"""Correct under concurrency: no oversell, no lost or duplicated orders, a cancel releases once."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.cart_race import race_opposite_carts
from tests.stack_client import Api, parallel


@pytest.mark.parametrize("round_", range(3))
def test_parallel_orders_never_oversell(api: Api, round_: int) -> None:
    product = api.new_product(16)
    responses = parallel(64, lambda i: api.place(product, 1, f"C{i}"))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 16, 409: 48}, statuses
    assert all(r.json()["error"]["code"] == "insufficient_stock" for r in responses if r.status_code == 409)
    stock = api.product(product)
    assert stock["available_quantity"] == 0 and stock["reserved_quantity"] == 16
    confirmed = api.orders(status="confirmed", limit=1000)["orders"]
    assert sum(o["quantity"] for o in confirmed if o["product_id"] == product) == 16


def test_parallel_orders_with_plenty_of_stock_all_succeed(api: Api) -> None:
    product = api.new_product(1000)
    responses = parallel(64, lambda i: api.place(product, 2, f"C{i}"))
    assert [r.status_code for r in responses] == [201] * 64
    ids = {r.json()["order_id"] for r in responses}
    assert len(ids) == 64
    for response in responses:
        assert api.order(response.json()["order_id"]) == response.json()
    assert api.product(product)["available_quantity"] == 1000 - 128


def test_parallel_cancels_release_stock_once(api: Api) -> None:
    product = api.new_product(10)
    order = api.place(product, 4).json()
    responses = parallel(20, lambda _: api.cancel(order["order_id"]))
    assert {r.status_code for r in responses} <= {200, 202}
    assert all(r.json()["order_id"] == order["order_id"] for r in responses)
    assert api.order(order["order_id"])["status"] == "cancelled"
    stock = api.product(product)
    assert stock["available_quantity"] == 10 and stock["reserved_quantity"] == 0


def test_carts_naming_products_in_opposite_orders_neither_deadlock_nor_oversell(api: Api) -> None:
    race_opposite_carts(api)


def test_parallel_cancels_of_a_cart_release_each_line_once(api: Api) -> None:
    a, b, c = api.new_product(10), api.new_product(10), api.new_product(10)
    order = api.place_cart([(a, 1), (b, 2), (c, 3)]).json()
    responses = parallel(20, lambda _: api.cancel(order["order_id"]))
    assert {r.status_code for r in responses} <= {200, 202}
    assert api.order(order["order_id"])["status"] == "cancelled"
    for product in (a, b, c):
        stock = api.product(product)
        assert (stock["available_quantity"], stock["reserved_quantity"]) == (10, 0)
