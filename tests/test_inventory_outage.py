"""Inventory down: placing an order answers a clean 503 (`inventory_unavailable`, with Retry-After) and
soon without even trying (the circuit breaker opens); reading orders keeps working; once inventory is
back (and the breaker's reset time has passed) orders succeed again, and the orders refused meanwhile
end failed, holding nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from local.processes import wait_until
from tests.markers import ENGINES
from tests.saga_helpers import all_orders, assert_recovered, audit, saga_stack
from tests.stack_client import Api

INITIAL = 50
REFUSED_CALLS = 8


@pytest.mark.parametrize("kind", ENGINES)
def test_orders_refused_cleanly_while_inventory_is_down(tmp_path: Path, kind: str) -> None:
    with saga_stack(tmp_path, kind, order_env={"BREAKER_FAIL_MAX": "3"}) as s:
        api = Api.of(s)
        product = api.new_product(INITIAL)
        placed = api.place(product, 2)
        assert placed.status_code == 201, placed.text
        before = placed.json()

        s.inventory.kill()
        for _ in range(REFUSED_CALLS):
            r = api.place(product, 1)
            assert r.status_code == 503, r.text
            assert r.headers["Content-Type"] == "application/json"
            assert int(r.headers["Retry-After"]) > 0
            assert r.json()["error"]["code"] == "inventory_unavailable"
        # Each refused order made two failed calls (reserve, release), so in at least one of the two
        # server processes the breaker has opened and answers without calling inventory.
        assert "circuit open" in s.order.log.read_text()

        # Reads need only the order database.
        listed = api.orders()
        assert [o["order_id"] for o in listed["orders"]] == [before["order_id"]]
        assert api.order(before["order_id"]) == before
        assert len(all_orders(api)) == 1 + REFUSED_CALLS
        # The audit cannot look at inventory either: it says so the same way.
        r = audit(api)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "inventory_unavailable"

        s.inventory.start()
        answers: list[int] = []

        def an_order_succeeds() -> bool:
            r = requests.post(f"{api.order_url}/orders", json={"product_id": product, "quantity": 1}, timeout=30)
            assert r.status_code in (201, 503), r.text
            answers.append(r.status_code)
            return r.status_code == 201

        wait_until(an_order_succeeds, timeout=30, interval=0.2, what="orders to succeed again")
        # Each server process has its own breaker: one that re-opened on a probe just before inventory came
        # back fails fast until its reset time has passed. Then every order succeeds: four in a row.
        streak = 0

        def four_in_a_row() -> bool:
            nonlocal streak
            streak = streak + 1 if an_order_succeeds() else 0
            return streak >= 4

        wait_until(four_in_a_row, timeout=30, interval=0.05, what="four orders in a row to succeed")

        orders = assert_recovered(api, product, INITIAL)
        statuses = sorted(o["status"] for o in orders.values())
        assert statuses.count("confirmed") == 1 + answers.count(201)
        assert statuses.count("failed") == REFUSED_CALLS + answers.count(503)
