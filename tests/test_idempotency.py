"""Idempotency-Key on POST /orders across server threads: parallel replays make one order. (The
sequential cases run in-process: tests/fast/test_idempotency.py.)"""

from __future__ import annotations

import uuid

from tests.stack_client import Api, parallel


def test_parallel_replays_create_one_order(api: Api) -> None:
    product = api.new_product(100)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    responses = parallel(20, lambda _: api.place(product, 3, "C9", headers=key))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses if r.status_code != 201]
    assert len({r.json()["order_id"] for r in responses}) == 1
    assert api.product(product)["available_quantity"] == 97
    mine = [o for o in api.orders(customer_id="C9", limit=1000)["orders"] if o["product_id"] == product]
    assert len(mine) == 1


def test_parallel_replays_of_a_cart_create_one_order(api: Api) -> None:
    a, b = api.new_product(100), api.new_product(100)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    responses = parallel(20, lambda _: api.place_cart([(a, 3), (b, 1)], "C9", headers=key))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses if r.status_code != 201]
    assert len({r.content for r in responses}) == 1
    assert (api.product(a)["available_quantity"], api.product(b)["available_quantity"]) == (97, 99)
