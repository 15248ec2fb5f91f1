"""The seed README's walkthrough works against the real services, with the seed's response shapes."""

from __future__ import annotations

import re

from tests.stack_client import Api

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def test_seed_catalogue_is_listed(api: Api) -> None:
    body = api.http.get(f"{api.inventory_url}/inventory", timeout=10).json()
    seeded = {p["product_id"]: p for p in body["products"] if p["product_id"].startswith("P00")}
    assert seeded["P001"]["name"] == "Laptop" and seeded["P001"]["price"] == 999.99
    assert seeded["P002"]["name"] == "Wireless Mouse" and seeded["P002"]["price"] == 29.99
    assert seeded["P003"]["name"] == "USB-C Cable" and seeded["P003"]["price"] == 15.99
    assert seeded["P004"]["name"] == "Mechanical Keyboard" and seeded["P004"]["price"] == 149.99
    assert body["total_products"] == len(body["products"])


def test_order_walkthrough_reserves_and_cancel_releases(api: Api) -> None:
    before = api.product("P001")
    r = api.place("P001", 2, "C123")
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["product_id"] == "P001" and order["quantity"] == 2 and order["customer_id"] == "C123"
    assert order["status"] == "confirmed"
    assert order["unit_price"] == 999.99 and order["total_price"] == 1999.98
    assert re.fullmatch(r"ORD\d+", order["order_id"])
    assert RFC3339.match(order["created_at"])
    after = api.product("P001")
    assert after["available_quantity"] == before["available_quantity"] - 2
    assert after["reserved_quantity"] == before["reserved_quantity"] + 2

    assert api.order(order["order_id"]) == order
    listed = api.orders()
    assert order["order_id"] in [o["order_id"] for o in listed["orders"]]

    cancelled = api.cancel(order["order_id"])
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and RFC3339.match(cancelled.json()["cancelled_at"])
    assert api.product("P001")["available_quantity"] == before["available_quantity"]


def test_customer_defaults_to_guest(api: Api) -> None:
    r = api.place("P003", 1)
    assert r.status_code == 201
    assert r.json()["customer_id"] == "guest"


def test_check_reports_availability_and_changes_nothing(api: Api) -> None:
    before = api.product("P002")
    r = api.http.post(f"{api.inventory_url}/inventory/check", json={"product_id": "P002", "quantity": 5}, timeout=10)
    assert r.status_code == 200
    assert r.json() == {
        "available": True,
        "available_quantity": before["available_quantity"],
        "requested_quantity": 5,
        "price": 29.99,
    }
    assert api.product("P002") == before


def test_every_response_carries_a_request_id(api: Api) -> None:
    r = api.http.get(f"{api.order_url}/orders", headers={"X-Request-ID": "abc-123"}, timeout=10)
    assert r.headers["X-Request-ID"] == "abc-123"
    assert api.http.get(f"{api.inventory_url}/nowhere", timeout=10).headers["X-Request-ID"]


def test_largest_price_times_largest_quantity_is_priced_exactly(api: Api) -> None:
    product = api.new_product(10_000, price=9_999_999_999.99)
    r = api.place(product, 10_000)
    assert r.status_code == 201, r.text
    assert r.json()["unit_price"] == 9_999_999_999.99
    assert '"total_price":99999999999900.00' in r.text
    assert api.order(r.json()["order_id"]) == r.json()
