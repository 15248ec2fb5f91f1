"""The consistency audit's findings, in-process: each discrepancy written into the databases directly
(as a bug or a lost step would leave it), then GET /admin/audit."""

from __future__ import annotations

import sqlalchemy as sa

from tests.inprocess import SERVICE, Services


def _age_inventory(apps: Services) -> None:
    """Reservations changed within the grace period are in flight and not judged: make them old."""
    with apps.inventory.extensions["engine"].begin() as conn:
        conn.execute(sa.text("UPDATE reservations SET updated_at = '2020-01-01 00:00:00.000000'"))


def _kinds(apps: Services) -> set[tuple[str, str]]:
    r = apps.audit()
    assert r.status_code == 409, r.text
    assert r.json["consistent"] is False
    return {(d["kind"], d["subject"]) for d in r.json["discrepancies"]}


def test_a_consistent_system_is_200(apps: Services) -> None:
    product = apps.new_product(10)
    for quantity in (1, 2, 3):
        apps.place(product, quantity)
    apps.cancel(apps.place(product, 1).json["order_id"])
    apps.age_orders(60)
    _age_inventory(apps)
    r = apps.audit()
    assert r.status_code == 200, r.text
    assert r.json["consistent"] is True and r.json["checked"]["orders"] == 4


def test_a_confirmed_order_without_its_reservation_is_found(apps: Services) -> None:
    product = apps.new_product(10)
    order_id = apps.place(product, 2).json["order_id"]
    # Inventory released it behind the order service's back.
    r = apps.inventory.test_client().post("/inventory/release", json={"order_id": order_id}, headers=SERVICE)
    assert r.status_code == 200
    apps.age_orders(60)
    _age_inventory(apps)
    assert ("confirmed_without_reservation", order_id) in _kinds(apps)


def test_a_reservation_without_an_order_is_found(apps: Services) -> None:
    product = apps.new_product(10)
    body = {"order_id": "ORD90000001", "product_id": product, "quantity": 1}
    assert apps.inventory.test_client().post("/inventory/reserve", json=body, headers=SERVICE).status_code == 201
    _age_inventory(apps)
    assert ("reservation_without_order", "ORD90000001") in _kinds(apps)


def test_stock_held_for_a_finished_order_is_found(apps: Services) -> None:
    product = apps.new_product(10)
    order_id = apps.place(product, 2).json["order_id"]
    apps.set_status(order_id, "cancelled")  # cancelled without the release
    apps.age_orders(60)
    _age_inventory(apps)
    assert ("stock_held_for_finished_order", order_id) in _kinds(apps)


def test_stock_columns_that_disagree_with_the_ledger_are_found(apps: Services) -> None:
    product = apps.new_product(10)
    apps.place(product, 2)
    with apps.inventory.extensions["engine"].begin() as conn:
        conn.execute(
            sa.text("UPDATE products SET available_quantity = 100, reserved_quantity = 5 WHERE product_id = :p"),
            {"p": product},
        )
    apps.age_orders(60)
    _age_inventory(apps)
    assert {("ledger_mismatch", product), ("reserved_mismatch", product)} <= _kinds(apps)


def test_the_audit_with_inventory_down_is_503(apps: Services) -> None:
    apps.transport.down = True
    r = apps.audit()
    assert (r.status_code, r.headers["Retry-After"], r.json["error"]["code"]) == (503, "2", "inventory_unavailable")
    assert apps.order.test_client().get("/admin/audit").status_code == 401
