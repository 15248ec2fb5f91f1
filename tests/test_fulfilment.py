"""Fulfilment with the inventory process killed: the order stays `fulfilling` (202) and the recovery worker
finishes it once inventory is back. (The rest of fulfilment runs in-process: tests/fast/test_fulfilment.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.markers import ENGINES
from tests.saga_helpers import assert_recovered, saga_stack
from tests.stack_client import Api


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
