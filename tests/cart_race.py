"""The cart race, shared by the one-stack test (tests/test_concurrency.py) and the cluster's
(tests/test_cluster.py): 64 one-unit carts of two products with 16 units each, half naming them [A, B]
and half [B, A]. Locks taken in the order named would deadlock here; taken in product-id order they
cannot, so exactly 16 carts win and 48 are refused, and a deadlock or lock timeout turned into a refusal
or a 5xx shows."""

from __future__ import annotations

from collections import Counter

from tests.stack_client import Api, parallel


def race_opposite_carts(api: Api) -> None:
    a, b = api.new_product(16), api.new_product(16)
    responses = parallel(64, lambda i: api.place_cart([(a, 1), (b, 1)] if i % 2 else [(b, 1), (a, 1)], f"C{i}"))
    answers = Counter((r.status_code, r.json().get("status") or r.json()["error"]["code"]) for r in responses)
    assert answers == {(201, "confirmed"): 16, (409, "insufficient_stock"): 48}, answers
    for product in (a, b):
        stock = api.product(product)
        assert (stock["available_quantity"], stock["reserved_quantity"]) == (0, 16)
    confirmed = [r.json() for r in responses if r.status_code == 201]
    assert all({i["product_id"] for i in o["items"]} == {a, b} for o in confirmed)
