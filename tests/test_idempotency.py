"""Idempotency-Key on POST /orders: a replay is answered again and reserves nothing more."""

from __future__ import annotations

import uuid

from tests.conftest import Api, parallel


def test_sequential_replay_returns_the_original_answer(api: Api) -> None:
    product = api.new_product(10)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = api.place(product, 2, "C1", headers=key)
    again = api.place(product, 2, "C1", headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert api.product(product)["available_quantity"] == 8


def test_replay_of_a_refusal_is_the_same_refusal(api: Api) -> None:
    product = api.new_product(1)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = api.place(product, 5, headers=key)
    api.http.post(
        f"{api.inventory_url}/inventory/{product}/restock", json={"quantity": 100}, headers=api.admin, timeout=10
    )
    again = api.place(product, 5, headers=key)
    assert first.status_code == again.status_code == 409
    assert first.json() == again.json()
    assert api.product(product)["available_quantity"] == 101


def test_same_key_with_another_body_is_refused(api: Api) -> None:
    product = api.new_product(10)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert api.place(product, 1, headers=key).status_code == 201
    other = api.place(product, 2, headers=key)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert api.product(product)["available_quantity"] == 9


def test_parallel_replays_create_one_order(api: Api) -> None:
    product = api.new_product(100)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    responses = parallel(20, lambda _: api.place(product, 3, "C9", headers=key))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses if r.status_code != 201]
    assert len({r.json()["order_id"] for r in responses}) == 1
    assert api.product(product)["available_quantity"] == 97
    mine = [o for o in api.orders(customer_id="C9", limit=1000)["orders"] if o["product_id"] == product]
    assert len(mine) == 1


def test_distinct_keys_make_distinct_orders(api: Api) -> None:
    product = api.new_product(10)
    a = api.place(product, 1, headers={"Idempotency-Key": uuid.uuid4().hex})
    b = api.place(product, 1, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert a.json()["order_id"] != b.json()["order_id"]
    assert api.product(product)["available_quantity"] == 8
