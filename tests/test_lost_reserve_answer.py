"""A reserve whose answer is lost: inventory commits it, then its worker dies before answering, so the
order service sees a dropped connection and retries. The retry must not reserve a second time, and the
order ends confirmed, or failed with every unit back."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.markers import ENGINES
from tests.saga_helpers import all_orders, assert_recovered, restart_clean, saga_stack
from tests.stack_client import Api
from tests.topology import Stack

INITIAL = 10


def _ledger(s: Stack, order_id: str) -> list[tuple[str, int, int]]:
    """(kind, available delta, reserved delta) of every stock movement inventory recorded for the order."""
    engine = s.inventory_db.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT kind, available_delta, reserved_delta FROM stock_ledger WHERE order_id = :o ORDER BY id"
                ),
                {"o": order_id},
            ).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("kind", ENGINES)
def test_lost_reserve_answer_reserves_once(tmp_path: Path, kind: str) -> None:
    with saga_stack(tmp_path, kind, inventory_failpoints="inventory_after_reserve") as s:
        api = Api.of(s)
        product = api.new_product(INITIAL)

        r = api.place(product, 3)
        # Every attempt's answer is lost, so the client is told to retry later (a 201 would need an
        # attempt that was answered).
        assert r.status_code in (201, 503), r.text
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "inventory_unavailable"
            assert "Retry-After" in r.headers
        (order,) = all_orders(api).values()
        order_id = order["order_id"]
        assert "retrying inventory call" in s.order.log.read_text()
        assert "inventory_after_reserve" in s.inventory.log.read_text()

        restart_clean(s.inventory)
        orders = assert_recovered(api, product, INITIAL)

        status = orders[order_id]["status"]
        assert status in ("confirmed", "failed")
        ledger = _ledger(s, order_id)
        # One reserve however many attempts reached inventory; a failed order gave its units back once.
        assert ledger[0] == ("reserve", -3, 3)
        assert ledger == ([("reserve", -3, 3)] if status == "confirmed" else [("reserve", -3, 3), ("release", 3, -3)])
        stock = api.product(product)
        held = 3 if status == "confirmed" else 0
        assert (stock["available_quantity"], stock["reserved_quantity"]) == (INITIAL - held, held)
