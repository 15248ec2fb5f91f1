"""Durable: restart both services and everything is as before; new ids never collide with old ones."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.markers import ENGINES
from tests.stack_client import Api
from tests.topology import stack


@pytest.mark.parametrize("kind", ENGINES)
def test_restart_keeps_orders_stock_and_ids(tmp_path: Path, kind: str) -> None:
    with stack(tmp_path, kind) as s:
        api = Api.of(s)
        product = api.new_product(20)
        placed = [api.place(product, 2).json() for _ in range(3)]
        cancelled = api.cancel(placed[0]["order_id"]).json()
        before_orders = api.orders(limit=1000)
        before_stock = api.product(product)

        for process in (s.order, s.inventory):
            assert process.stop(signal.SIGTERM) == 0
        s.inventory.start()
        s.order.start()

        assert api.orders(limit=1000) == before_orders
        assert api.product(product) == before_stock
        assert api.order(cancelled["order_id"]) == cancelled
        new = api.place(product, 1).json()
        old_ids = {o["order_id"] for o in placed}
        assert new["order_id"] not in old_ids
        assert int(new["order_id"][3:]) > max(int(i[3:]) for i in old_ids)
        assert api.product(product)["available_quantity"] == before_stock["available_quantity"] - 1
