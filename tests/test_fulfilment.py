"""Fulfilment: an operator (admin token) marks a confirmed order fulfilled, inventory turns its reservation
into a sale, and the order can no longer be cancelled. With inventory down, the order stays `fulfilling`
(202) and the recovery worker finishes it once inventory is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ENGINES, Api
from tests.saga_helpers import assert_recovered, saga_stack, wait_audit_clean


def test_fulfil_sells_the_units_and_ends_cancelling(api: Api) -> None:
    product = api.new_product(10)
    placed = api.place(product, 3)
    assert placed.status_code == 201, placed.text
    order = placed.json()

    r = api.fulfil(order["order_id"])
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "fulfilled"
    assert "fulfilled_at" in done
    assert {k: v for k, v in done.items() if k not in ("status", "fulfilled_at")} == {
        k: v for k, v in order.items() if k != "status"
    }
    assert api.order(order["order_id"]) == done
    # The units are sold: they leave `reserved`, and `available` does not get them back.
    stock = api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (7, 0)

    r = api.cancel(order["order_id"])
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "not_cancellable"
    # Fulfilling again answers the same order and sells nothing more.
    again = api.fulfil(order["order_id"])
    assert again.status_code == 200, again.text
    assert again.json() == done
    assert api.product(product) == stock
    res = api.reservation(order["order_id"])
    assert res.status_code == 200, res.text
    assert (res.json()["status"], res.json()["quantity"]) == ("committed", 3)
    wait_audit_clean(api, timeout=10)


def test_only_a_confirmed_order_can_be_fulfilled(api: Api) -> None:
    product = api.new_product(10)
    order = api.place(product, 2).json()
    assert api.cancel(order["order_id"]).status_code == 200
    r = api.fulfil(order["order_id"])
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "not_fulfillable"
    assert api.fulfil("ORD99999999").status_code == 404
    stock = api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (10, 0)


def test_fulfil_needs_the_admin_token(api: Api) -> None:
    product = api.new_product(10)
    order = api.place(product, 2).json()
    for headers in ({}, api.service, {"Authorization": "Bearer wrong"}):
        r = api.http.post(f"{api.order_url}/orders/{order['order_id']}/fulfil", headers=headers, timeout=10)
        assert r.status_code == 401, r.text
    assert api.order(order["order_id"])["status"] == "confirmed"


@pytest.mark.parametrize("kind", ENGINES)
def test_fulfil_while_inventory_is_down_is_finished_by_the_worker(tmp_path: Path, kind: str) -> None:
    with saga_stack(tmp_path, kind) as s:
        api = Api.of(s)
        product = api.new_product(10)
        order = api.place(product, 4).json()

        s.inventory.kill()
        r = api.fulfil(order["order_id"])
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "fulfilling"
        # Still fulfilling: it can be neither cancelled nor fulfilled twice meanwhile.
        assert api.cancel(order["order_id"]).status_code == 409
        again = api.fulfil(order["order_id"])
        assert (again.status_code, again.json()["status"]) == (202, "fulfilling")

        s.inventory.start()
        orders = assert_recovered(api, product, 10)
        assert orders[order["order_id"]]["status"] == "fulfilled"
        assert "fulfilled_at" in orders[order["order_id"]]
        stock = api.product(product)
        assert (stock["available_quantity"], stock["reserved_quantity"]) == (6, 0)
