"""Orders of several products (carts), in-process: placed all or nothing, each line priced and kept in
order, cancelled and fulfilled line by line, replayed by Idempotency-Key, and an order from before carts
read as one line."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from werkzeug.test import TestResponse

from order_service.domain import Line
from order_service.saga import OrderRequest
from service_common.storage import writing
from tests.inprocess import ADMIN, Services, Templates, services


def _cart(apps: Services, *lines: tuple[str, int], headers: dict[str, str] | None = None, **extra: Any) -> TestResponse:
    body = {"items": [{"product_id": p, "quantity": q} for p, q in lines], "customer_id": "C7", **extra}
    return apps.order.test_client().post("/orders", json=body, headers=headers or {})


def _order_count(apps: Services) -> int:
    with apps.order_engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one())


def test_a_cart_is_confirmed_with_every_line_priced_in_the_order_given(apps: Services) -> None:
    a, b, c = apps.new_product(10, 1.1), apps.new_product(10, 0.7), apps.new_product(10, 999.99)
    r = _cart(apps, (b, 3), (a, 1), (c, 2))
    assert r.status_code == 201, r.text
    order = r.json
    assert order["items"] == [
        {"product_id": b, "quantity": 3, "unit_price": 0.7, "line_price": 2.1},
        {"product_id": a, "quantity": 1, "unit_price": 1.1, "line_price": 1.1},
        {"product_id": c, "quantity": 2, "unit_price": 999.99, "line_price": 1999.98},
    ]
    assert r.get_data().count(b'"total_price":2003.18') == 1  # exact, two decimals
    # A cart's top-level fields: no single product or unit price; quantity is every unit.
    assert (order["product_id"], order["unit_price"], order["quantity"]) == (None, None, 6)
    assert apps.order_json(order["order_id"]) == order
    assert [apps.stock(p) for p in (a, b, c)] == [(9, 1), (7, 3), (8, 2)]
    listed = apps.order.test_client().get("/orders").json["orders"]
    assert listed == [order]
    assert apps.audit().status_code == 200


def test_a_one_line_order_keeps_the_seed_fields(apps: Services) -> None:
    a = apps.new_product(10, 2.5)
    seed = apps.place(a, 2, "C7").json
    cart = _cart(apps, (a, 2)).json
    for order in (seed, cart):
        assert (order["product_id"], order["quantity"], order["unit_price"], order["total_price"]) == (a, 2, 2.5, 5.0)
        assert order["items"] == [{"product_id": a, "quantity": 2, "unit_price": 2.5, "line_price": 5.0}]


def test_a_short_line_rejects_the_cart_with_details_and_moves_nothing(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(1)
    r = _cart(apps, (a, 4), (b, 2))
    assert r.status_code == 409 and r.json["error"]["code"] == "insufficient_stock"
    assert r.json["error"]["details"] == [{"product_id": b, "requested": 2, "available": 1}]
    assert [apps.stock(p) for p in (a, b)] == [(10, 0), (1, 0)]
    assert apps.order.test_client().get("/orders").json["total_count"] == 0
    rejected = apps.order.test_client().get("/orders?status=rejected").json["orders"]
    assert [o["items"][1]["product_id"] for o in rejected] == [b]


def test_an_unknown_product_rejects_the_cart_naming_it_and_moves_nothing(apps: Services) -> None:
    a = apps.new_product(10)
    r = _cart(apps, (a, 1), ("NOSUCH-1", 1))
    assert r.status_code == 404 and r.json["error"]["code"] == "product_not_found"
    assert "NOSUCH-1" in r.json["error"]["message"]
    assert apps.stock(a) == (10, 0)
    assert apps.order.test_client().get("/orders").json["total_count"] == 0


_LINE = {"product_id": "P001", "quantity": 1}


BAD_CARTS = {
    "items_and_seed_fields": {"items": [_LINE], "product_id": "P001", "quantity": 1},
    "items_and_quantity": {"items": [_LINE], "quantity": 1},
    "empty": {"items": []},
    "repeated_product": {"items": [_LINE, {"product_id": "P001", "quantity": 2}]},
    "too_many_lines": {"items": [{"product_id": f"P{i:03d}", "quantity": 1} for i in range(51)]},
    "unknown_field": {"items": [{**_LINE, "unit_price": 1}]},
    "no_quantity": {"items": [{"product_id": "P001"}]},
    "zero": {"items": [{"product_id": "P001", "quantity": 0}]},
    "over_max_quantity": {"items": [{"product_id": "P001", "quantity": 10_001}]},
    "string_quantity": {"items": [{"product_id": "P001", "quantity": "1"}]},
    "items_not_a_list": {"items": {"product_id": "P001", "quantity": 1}},
    "product_without_quantity": {"product_id": "P001"},
    "nothing": {"customer_id": "C1"},
    "null_items": {"items": None, "product_id": "P001", "quantity": 1},
}


def test_each_bad_cart_is_refused_422_and_changes_nothing(apps: Services) -> None:
    before = apps.stock("P001")
    for name, body in BAD_CARTS.items():
        r = apps.order.test_client().post("/orders", json=body)
        assert (r.status_code, r.json["error"]["code"]) == (422, "validation_error"), (name, r.text)
    assert apps.stock("P001") == before
    assert _order_count(apps) == 0
    assert apps.transport.calls == []


def test_cancel_releases_every_line_once(apps: Services) -> None:
    a, b, c = apps.new_product(5), apps.new_product(5), apps.new_product(5)
    order_id = _cart(apps, (a, 1), (b, 2), (c, 3)).json["order_id"]
    first, second = apps.cancel(order_id), apps.cancel(order_id)
    assert (first.status_code, second.status_code) == (200, 200) and first.json == second.json
    assert first.json["status"] == "cancelled"
    assert [apps.stock(p) for p in (a, b, c)] == [(5, 0), (5, 0), (5, 0)]
    assert apps.audit().status_code == 200


def test_fulfil_sells_every_line_and_a_cancel_is_then_refused(apps: Services) -> None:
    a, b = apps.new_product(5), apps.new_product(5)
    order_id = _cart(apps, (a, 1), (b, 2)).json["order_id"]
    r = apps.fulfil(order_id)
    assert r.status_code == 200 and r.json["status"] == "fulfilled"
    assert [apps.stock(p) for p in (a, b)] == [(4, 0), (3, 0)]
    refused = apps.cancel(order_id)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "not_cancellable"
    assert [apps.stock(p) for p in (a, b)] == [(4, 0), (3, 0)]
    assert apps.audit().status_code == 200


def test_a_cart_replays_by_idempotency_key_and_another_cart_is_refused(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(10)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = _cart(apps, (a, 1), (b, 2), headers=key)
    again = _cart(apps, (a, 1), (b, 2), headers=key)
    assert (first.status_code, again.status_code) == (201, 201) and first.get_data() == again.get_data()
    for other in [((a, 1), (b, 3)), ((b, 2), (a, 1)), ((a, 1),)]:
        r = _cart(apps, *other, headers=key)
        assert r.status_code == 422 and r.json["error"]["code"] == "idempotency_key_reused"
    assert [apps.stock(p) for p in (a, b)] == [(9, 1), (8, 2)]


def test_a_seed_body_and_its_one_line_cart_share_a_key(apps: Services) -> None:
    a = apps.new_product(10)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = apps.place(a, 2, "C7", headers=key)
    again = _cart(apps, (a, 2), headers=key)
    assert (first.status_code, again.status_code) == (201, 201) and first.get_data() == again.get_data()
    assert apps.stock(a) == (8, 2)


def test_a_one_line_fingerprint_is_the_one_from_before_carts() -> None:
    """A key stored by the previous release holds this hash: a retry across the upgrade must match it."""
    # sha256 of {"customer_id":"C1","product_id":"P001","quantity":2}, as the release before carts stored it.
    before = "e4906c1803c9767f1161a87ceb2940d7f94dbab709287772fa41edab968be199"
    assert OrderRequest((Line("P001", 2),), "C1").fingerprint() == before


def test_an_order_without_line_rows_reads_and_cancels_as_one_line(apps: Services) -> None:
    """As an order the previous release wrote during a rolling update (its replicas write no lines)."""
    a = apps.new_product(10, 3)
    order = apps.place(a, 2).json
    with writing(apps.order_engine) as conn:
        conn.execute(sa.text("DELETE FROM order_lines"))
    assert apps.order_json(order["order_id"]) == order
    assert apps.cancel(order["order_id"]).json["status"] == "cancelled"
    assert apps.stock(a) == (10, 0)


def test_the_largest_cart_is_priced_exactly(templates: Templates, tmp_path: Path) -> None:
    """MAX_LINES lines of MAX_QUANTITY units at the largest price fit every money column, exactly."""
    with services(templates, tmp_path) as apps:
        products = [apps.new_product(10_000, 9_999_999_999.99) for _ in range(50)]
        r = _cart(apps, *[(p, 10_000) for p in products])
        assert r.status_code == 201, r.text
        assert b'"total_price":4999999999995000.00' in r.get_data()
        assert b'"line_price":99999999999900.00' in r.get_data()
        stored = apps.order.test_client().get(f"/orders/{r.json['order_id']}").get_data()
        assert b'"total_price":4999999999995000.00' in stored
        with apps.order_engine.connect() as conn:
            column = conn.execute(sa.text("SELECT total_price FROM orders")).scalar_one()
        assert Decimal(str(column)) == Decimal("4999999999995000.00")
        assert apps.cancel(r.json["order_id"]).status_code == 200


def test_placed_orders_are_counted_by_lines(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(10)
    _cart(apps, (a, 1), (b, 1))
    text = apps.order.test_client().get("/metrics").get_data(as_text=True)
    assert 'order_lines_per_order_bucket{le="2.0"}' in text


def test_admin_audit_flags_a_cart_whose_reservation_lost_a_line(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(10)
    order_id = _cart(apps, (a, 1), (b, 1)).json["order_id"]
    with writing(apps.inventory.extensions["engine"]) as conn:
        conn.execute(sa.text("DELETE FROM reservation_lines WHERE product_id = :p"), {"p": b})
    apps.age_orders(3600)
    with writing(apps.inventory.extensions["engine"]) as conn:
        conn.execute(sa.text("UPDATE reservations SET updated_at = :t"), {"t": "2000-01-01 00:00:00"})
    r = apps.order.test_client().get("/admin/audit", headers=ADMIN)
    assert r.status_code == 409
    kinds = {(d["kind"], d["subject"]) for d in r.json["discrepancies"]}
    assert ("confirmed_without_reservation", order_id) in kinds


def test_the_document_describes_both_request_shapes(apps: Services) -> None:
    schema = apps.order.test_client().get("/openapi.json").json["components"]["schemas"]["CreateOrderRequest"]
    assert [shape["required"] for shape in schema["oneOf"]] == [["product_id", "quantity"], ["items"]]
    assert schema["properties"]["items"]["maxItems"] == 50 and schema["properties"]["items"]["minItems"] == 1
    assert schema["properties"]["quantity"]["type"] == "integer"  # never null
