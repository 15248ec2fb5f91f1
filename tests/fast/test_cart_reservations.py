"""Inventory's reservations of several lines (a cart), in-process: all or nothing, once, and every line
released or sold exactly once."""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse

from tests.inprocess import SERVICE, Services


def _post(apps: Services, path: str, body: dict[str, Any]) -> TestResponse:
    return apps.inventory.test_client().post(path, json=body, headers=SERVICE)


def _items(*lines: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"product_id": p, "quantity": q} for p, q in lines]


def _ledger_matches(apps: Services, *products: str) -> None:
    report = _post_get(apps)["products"]
    for product in products:
        stock = report[product]
        assert (stock["ledger_available"], stock["ledger_reserved"]) == (
            stock["available_quantity"],
            stock["reserved_quantity"],
        )
        assert stock["reserved_quantity"] == stock["held_reservations"]


def _post_get(apps: Services) -> dict[str, Any]:
    r = apps.inventory.test_client().get("/inventory/audit", headers=SERVICE)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json
    return body


def test_a_cart_reserves_every_line_at_its_price(apps: Services) -> None:
    a, b, c = apps.new_product(10, 1.5), apps.new_product(10, 2.25), apps.new_product(10, 100)
    r = _post(apps, "/inventory/reserve", {"order_id": "C-all-" + a, "items": _items((b, 2), (a, 1), (c, 3))})
    assert r.status_code == 201, r.text
    assert r.json["lines"] == [
        {"product_id": b, "quantity": 2, "unit_price": 2.25},
        {"product_id": a, "quantity": 1, "unit_price": 1.5},
        {"product_id": c, "quantity": 3, "unit_price": 100.0},
    ]
    # The fields from before carts are the first line's.
    assert (r.json["product_id"], r.json["quantity"], r.json["unit_price"]) == (b, 2, 2.25)
    assert [apps.stock(p) for p in (a, b, c)] == [(9, 1), (8, 2), (7, 3)]
    ledger = [e for e in _post_get(apps)["reservations"] if e["order_id"] == "C-all-" + a]
    assert ledger[0]["lines"] == _items((b, 2), (a, 1), (c, 3))
    _ledger_matches(apps, a, b, c)


def test_a_short_line_refuses_the_cart_with_details_and_moves_nothing(apps: Services) -> None:
    a, b, c = apps.new_product(10), apps.new_product(1), apps.new_product(0)
    r = _post(apps, "/inventory/reserve", {"order_id": "C-short-" + a, "items": _items((a, 5), (b, 2), (c, 1))})
    assert r.status_code == 409 and r.json["error"]["code"] == "insufficient_stock"
    assert r.json["error"]["details"] == [
        {"product_id": b, "requested": 2, "available": 1},
        {"product_id": c, "requested": 1, "available": 0},
    ]
    assert [apps.stock(p) for p in (a, b, c)] == [(10, 0), (1, 0), (0, 0)]
    assert apps.reservation("C-short-" + a).status_code == 404
    _ledger_matches(apps, a, b, c)


def test_an_unknown_product_refuses_the_cart_naming_it_and_moves_nothing(apps: Services) -> None:
    a = apps.new_product(10)
    r = _post(apps, "/inventory/reserve", {"order_id": "C-unknown-" + a, "items": _items((a, 1), ("NOPE-9", 1))})
    assert r.status_code == 404 and r.json["error"]["code"] == "product_not_found"
    assert "NOPE-9" in r.json["error"]["message"]
    assert apps.stock(a) == (10, 0)
    assert apps.reservation("C-unknown-" + a).status_code == 404


def test_a_one_product_body_is_answered_as_before_with_its_line(apps: Services) -> None:
    a = apps.new_product(1, 3)
    r = _post(apps, "/inventory/reserve", {"order_id": "C-one-" + a, "product_id": a, "quantity": 1})
    assert r.status_code == 201
    assert r.json["lines"] == [{"product_id": a, "quantity": 1, "unit_price": 3.0}]
    short = _post(apps, "/inventory/reserve", {"order_id": "C-one2-" + a, "product_id": a, "quantity": 1})
    error = short.json["error"]
    assert (error["available_quantity"], error["requested_quantity"]) == (0, 1)
    assert error["details"] == [{"product_id": a, "requested": 1, "available": 0}]


def test_a_cart_reserve_is_idempotent_by_order_and_refuses_other_lines(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(10)
    body = {"order_id": "C-again-" + a, "items": _items((a, 1), (b, 2))}
    first, again = _post(apps, "/inventory/reserve", body), _post(apps, "/inventory/reserve", body)
    assert (first.status_code, again.status_code) == (201, 200) and first.json == again.json
    other = _post(apps, "/inventory/reserve", {"order_id": body["order_id"], "items": _items((a, 1), (b, 3))})
    assert other.status_code == 409 and other.json["error"]["code"] == "reservation_mismatch"
    one = _post(apps, "/inventory/reserve", {"order_id": body["order_id"], "product_id": a, "quantity": 1})
    assert one.status_code == 409 and one.json["error"]["code"] == "reservation_mismatch"
    assert [apps.stock(p) for p in (a, b)] == [(9, 1), (8, 2)]


def test_release_and_commit_act_on_every_line_once(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(10)
    _post(apps, "/inventory/reserve", {"order_id": "C-rel-" + a, "items": _items((a, 1), (b, 2))})
    _post(apps, "/inventory/reserve", {"order_id": "C-com-" + a, "items": _items((b, 3), (a, 4))})
    for _ in range(2):
        r = _post(apps, "/inventory/release", {"order_id": "C-rel-" + a})
        assert r.status_code == 200 and r.json["status"] == "released"
        r = _post(apps, "/inventory/commit", {"order_id": "C-com-" + a})
        assert r.status_code == 200 and r.json["status"] == "committed"
    assert [apps.stock(p) for p in (a, b)] == [(6, 0), (7, 0)]
    # A release naming one product cannot match a cart; a sold cart is not released.
    r = _post(apps, "/inventory/release", {"order_id": "C-com-" + a, "product_id": b, "quantity": 3})
    assert r.status_code == 409
    assert _post(apps, "/inventory/release", {"order_id": "C-com-" + a}).json["error"]["code"] == "committed"
    _ledger_matches(apps, a, b)


def test_a_tombstone_refuses_a_late_cart(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(10)
    assert _post(apps, "/inventory/release", {"order_id": "C-late-" + a}).status_code == 200
    r = _post(apps, "/inventory/reserve", {"order_id": "C-late-" + a, "items": _items((a, 1), (b, 1))})
    assert r.status_code == 409 and r.json["error"]["code"] == "released"
    assert [apps.stock(p) for p in (a, b)] == [(10, 0), (10, 0)]


def test_check_answers_each_line_of_a_cart_and_holds_nothing(apps: Services) -> None:
    a, b = apps.new_product(3, 2), apps.new_product(1, 5)
    r = apps.inventory.test_client().post("/inventory/check", json={"items": _items((a, 2), (b, 2))})
    assert r.status_code == 200
    assert r.json == {
        "available": False,
        "items": [
            {"product_id": a, "available": True, "available_quantity": 3, "requested_quantity": 2, "price": 2.0},
            {"product_id": b, "available": False, "available_quantity": 1, "requested_quantity": 2, "price": 5.0},
        ],
    }
    assert [apps.stock(p) for p in (a, b)] == [(3, 0), (1, 0)]


BAD_CARTS = {
    "empty": {"items": []},
    "both_shapes": {"items": [{"product_id": "P001", "quantity": 1}], "product_id": "P001", "quantity": 1},
    "repeated": {"items": [{"product_id": "P001", "quantity": 1}, {"product_id": "P001", "quantity": 2}]},
    "zero": {"items": [{"product_id": "P001", "quantity": 0}]},
    "over_max": {"items": [{"product_id": "P001", "quantity": 10_001}]},
    "unknown_field": {"items": [{"product_id": "P001", "quantity": 1, "price": 1}]},
    "too_many": {"items": [{"product_id": f"P{i}", "quantity": 1} for i in range(51)]},
    "no_quantity": {"product_id": "P001"},
    "none": {},
}


def test_each_bad_cart_is_refused_422_and_moves_nothing(apps: Services) -> None:
    before = apps.stock("P001")
    for name, body in BAD_CARTS.items():
        r = _post(apps, "/inventory/reserve", {"order_id": "C-bad-1", **body})
        assert (r.status_code, r.json["error"]["code"]) == (422, "validation_error"), (name, r.text)
        r = apps.inventory.test_client().post("/inventory/check", json=body)
        assert (r.status_code, r.json["error"]["code"]) == (422, "validation_error"), (name, r.text)
    assert apps.stock("P001") == before
    assert apps.reservation("C-bad-1").status_code == 404
