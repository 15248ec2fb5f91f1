"""The saga survives a crash at each of its steps: a fail point kills the order service (or inventory)
right there, the operator restarts it without the fail point, and the recovery worker finishes the order.
Afterwards every order is final, the audit is clean and no unit of stock leaked. Every order here is a
cart of three lines, so every step is shown to act on all of them (a one-product order is a one-line
cart: the same code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.processes import is_ready, wait_until
from tests.markers import ENGINES
from tests.saga_helpers import (
    all_orders,
    assert_recovered,
    assert_stock_matches_orders,
    expect_crash,
    restart_clean,
    saga_stack,
)
from tests.stack_client import Api

INITIAL = 10

# fail point in the order service → (fail point in inventory, state the crash leaves, units then held per
# line, end state)
PLACING = {
    # Written pending, inventory never asked: nothing held; the worker fails it (leaving a tombstone).
    "after_pending": ("", "pending", 0, "failed"),
    # Reserved, not confirmed: the worker finds the held reservation and confirms the order.
    "after_reserve": ("", "pending", 3, "confirmed"),
    # Inventory reserved but its answer was lost, so the order was failed; the crash comes before the
    # release, with the units still held. The worker releases them.
    "after_failing": ("inventory_after_reserve", "failing", 3, "failed"),
}


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("failpoint", sorted(PLACING))
def test_crash_while_placing_is_recovered(tmp_path: Path, kind: str, failpoint: str) -> None:
    inventory_failpoint, left_in, held, end_state = PLACING[failpoint]
    with saga_stack(tmp_path, kind, order_failpoints=failpoint, inventory_failpoints=inventory_failpoint) as s:
        api = Api.of(s)
        products = [api.new_product(INITIAL) for _ in range(3)]
        cart = [(p, 3) for p in products]

        key = {"Idempotency-Key": f"crash-at-{failpoint}"}
        expect_crash(lambda: api.place_cart(cart, headers=key))
        # A crashed inventory worker is replaced by its server; until then its connections are refused.
        wait_until(lambda: is_ready(s.inventory.url), what="inventory's workers to be replaced")

        # The crash left the saga exactly at the step named by the fail point.
        (order,) = all_orders(api).values()
        assert order["status"] == left_in
        assert [api.product(p)["reserved_quantity"] for p in products] == [held] * 3

        if inventory_failpoint:
            restart_clean(s.inventory)
        restart_clean(s.order)

        orders = assert_recovered(api, products, INITIAL)
        assert orders[order["order_id"]]["status"] == end_state
        assert s.worker is not None and s.worker.alive()

        # The client retries with its key: a placed order answers as placed; a failed one let its key
        # go, so the retry is a new attempt (which succeeds now).
        again = api.place_cart(cart, headers=key)
        assert again.status_code == 201, again.text
        if end_state == "confirmed":
            assert again.json() == api.order(order["order_id"])
        else:
            assert again.json()["order_id"] != order["order_id"]
        assert_stock_matches_orders(api, products, INITIAL, all_orders(api))


@pytest.mark.parametrize("kind", ENGINES)
def test_crash_while_cancelling_is_recovered(tmp_path: Path, kind: str) -> None:
    with saga_stack(tmp_path, kind, order_failpoints="after_cancelling") as s:
        api = Api.of(s)
        products = [api.new_product(INITIAL) for _ in range(3)]
        placed = api.place_cart([(p, 4) for p in products])
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]

        expect_crash(lambda: api.cancel(order_id))
        # The crashed server worker is replaced by its server; until then its connections are reset.
        wait_until(lambda: is_ready(s.order.url), what="the order service's workers to be replaced")
        assert api.order(order_id)["status"] == "cancelling"
        assert [api.product(p)["reserved_quantity"] for p in products] == [4] * 3

        restart_clean(s.order)

        orders = assert_recovered(api, products, INITIAL)
        assert orders[order_id]["status"] == "cancelled"
        assert "cancelled_at" in orders[order_id]
        for product in products:
            stock = api.product(product)
            assert (stock["available_quantity"], stock["reserved_quantity"]) == (INITIAL, 0)
