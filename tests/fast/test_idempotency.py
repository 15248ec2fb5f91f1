"""Idempotency-Key on POST /orders, in-process: a replay is answered the stored bytes and reserves
nothing more. (Moved from tests/test_idempotency.py; the parallel replays stay there.)"""

from __future__ import annotations

import uuid

from tests.inprocess import ADMIN, Services


def _key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def test_sequential_replay_returns_the_original_answer(apps: Services) -> None:
    product = apps.new_product(10)
    key = _key()
    first = apps.place(product, 2, "C1", headers=key)
    again = apps.place(product, 2, "C1", headers=key)
    assert first.status_code == again.status_code == 201
    assert first.get_data() == again.get_data()  # the stored bytes, exactly
    assert apps.stock(product)[0] == 8


def test_a_replay_after_the_order_moved_on_still_answers_the_first_answer(apps: Services) -> None:
    product = apps.new_product(10)
    key = _key()
    first = apps.place(product, 2, headers=key)
    assert apps.cancel(first.json["order_id"]).status_code == 200
    again = apps.place(product, 2, headers=key)
    assert (again.status_code, again.get_data()) == (201, first.get_data())


def test_replay_of_a_refusal_is_the_same_refusal(apps: Services) -> None:
    product = apps.new_product(1)
    key = _key()
    first = apps.place(product, 5, headers=key)
    apps.inventory.test_client().post(f"/inventory/{product}/restock", json={"quantity": 100}, headers=ADMIN)
    again = apps.place(product, 5, headers=key)
    assert first.status_code == again.status_code == 409
    assert first.get_data() == again.get_data()
    assert apps.stock(product)[0] == 101


def test_same_key_with_another_body_is_refused(apps: Services) -> None:
    product = apps.new_product(10)
    key = _key()
    assert apps.place(product, 1, headers=key).status_code == 201
    other = apps.place(product, 2, headers=key)
    assert other.status_code == 422 and other.json["error"]["code"] == "idempotency_key_reused"
    assert apps.stock(product)[0] == 9


def test_distinct_keys_make_distinct_orders(apps: Services) -> None:
    product = apps.new_product(10)
    a = apps.place(product, 1, headers=_key())
    b = apps.place(product, 1, headers=_key())
    assert a.json["order_id"] != b.json["order_id"]
    assert apps.stock(product)[0] == 8


def test_a_failed_order_lets_its_key_go(apps: Services) -> None:
    """An outage is not a decision: a retry with the same key is a new attempt, not a replay of the 503."""
    product = apps.new_product(10)
    key = _key()
    apps.transport.down = True
    first = apps.place(product, 1, headers=key)
    assert (first.status_code, first.headers["Retry-After"]) == (503, "2")
    apps.transport.down = False
    again = apps.place(product, 1, headers=key)
    assert again.status_code == 201, again.text
    assert apps.place(product, 1, headers=key).get_data() == again.get_data()


def test_a_malformed_key_is_400_but_only_after_the_body_is_valid(apps: Services) -> None:
    product = apps.new_product(10)
    bad = {"Idempotency-Key": "\x7f" * 3}
    r = apps.place(product, 1, headers=bad)
    assert (r.status_code, r.json["error"]["code"]) == (400, "invalid_idempotency_key")
    r = apps.place(product, 10_001, headers=bad)
    assert (r.status_code, r.json["error"]["code"]) == (422, "validation_error")
    assert apps.place(product, 1, headers={"Idempotency-Key": "x" * 256}).status_code == 400
    assert apps.stock(product)[0] == 10
