"""The upgrade to carts on real data. The previous release (the commit before the first cart migration,
unpacked from git) runs as processes and fills both databases: orders confirmed, cancelled, fulfilled and
rejected, one placed with an Idempotency-Key. This release then migrates those databases; an old order
replica still places an order on the new schema against the new inventory (a rolling update), then this
release serves everything: every old order reads as one line with its prices, and is cancelled and
fulfilled line by line; the key replays with a one-line cart; the audit is clean and no unit of stock
moved that should not."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from local.processes import migrate, wait_until
from tests.markers import ENGINES, requires_program
from tests.saga_helpers import SAGA_ENV, all_orders, assert_stock_matches_orders, audit
from tests.stack_client import Api
from tests.topology import Database, Stack

ROOT = Path(__file__).resolve().parents[1]
FIRST_CART_MIGRATION = "inventory-service/inventory_service/migrations/versions/0003_reservation_lines.py"
INITIAL = 20

pytestmark = requires_program("git")


def _previous_release(into: Path) -> Path:
    """The tree of the commit before the one that added the first cart migration."""

    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout

    added = git("log", "--format=%H", "-1", "--diff-filter=A", "--", FIRST_CART_MIGRATION).decode().strip()
    assert added, f"{FIRST_CART_MIGRATION} is not in this repository's history"
    with tarfile.open(fileobj=io.BytesIO(git("archive", f"{added}^"))) as tree:
        tree.extractall(into, filter="data")
    return into


def _old_code(tree: Path) -> dict[str, str]:
    """The previous release's packages ahead of this one's on the import path (PYTHONPATH comes first)."""
    paths = [tree / "service-common", tree / "inventory-service", tree / "order-service"]
    return {"PYTHONPATH": ":".join(str(p) for p in paths)}


def _audit_judged_everything(api: Api) -> bool:
    r = audit(api)
    report: dict[str, Any] = r.json()
    return r.status_code == 200 and report["consistent"] and report["checked"]["orders_in_flight"] == 0


@pytest.mark.parametrize("kind", ENGINES)
def test_orders_of_the_previous_release_are_cancelled_and_fulfilled_after_the_upgrade(
    tmp_path: Path, kind: str
) -> None:
    old = _old_code(_previous_release(tmp_path / "previous"))
    s = Stack(tmp_path, kind, Database(kind, tmp_path, "inventory"), Database(kind, tmp_path, "orders"))
    s.configure(old, {**SAGA_ENV, **old})
    try:
        # --- the previous release fills the databases ---
        s.start()
        api = Api.of(s)
        a, b = api.new_product(INITIAL, 12.34), api.new_product(INITIAL, 0.99)
        to_cancel, to_fulfil = api.place(a, 3).json(), api.place(b, 5).json()
        assert "items" not in to_cancel  # the previous release answered this
        cancelled, fulfilled = api.place(a, 2).json(), api.place(b, 1).json()
        assert api.cancel(cancelled["order_id"]).status_code == 200
        assert api.fulfil(fulfilled["order_id"]).status_code == 200
        assert api.place(a, 1000).status_code == 409
        key = {"Idempotency-Key": "placed-before-the-upgrade"}
        keyed = api.place(b, 2, "C5", headers=key)
        assert keyed.status_code == 201
        before = all_orders(api)
        s.stop()

        # --- this release migrates them; for a moment an old order replica still serves, on the new schema
        # and against the new inventory (the rolling update), and writes an order without line rows ---
        del s.inventory.env["PYTHONPATH"]
        for process in (s.inventory, s.order):
            migrate(process.module, {k: v for k, v in process.env.items() if k != "PYTHONPATH"})
        s.inventory.start()
        s.order.start()  # the previous release's code: the schema is newer than it knows, which it serves
        rolling = api.place(a, 4, "C6").json()
        assert rolling["status"] == "confirmed" and "items" not in rolling
        s.order.stop()
        del s.order.env["PYTHONPATH"]
        s.order.start()
        before[rolling["order_id"]] = rolling
        after = all_orders(api)
        assert after.keys() == before.keys()
        for order_id, order in before.items():
            line = {
                "product_id": order["product_id"],
                "quantity": order["quantity"],
                "unit_price": order["unit_price"],
                "line_price": order["total_price"],
            }
            assert after[order_id] == {**order, "items": [line]}, order_id
        for order_id in (to_cancel["order_id"], to_fulfil["order_id"], keyed.json()["order_id"]):
            (res_line,) = api.reservation(order_id).json()["lines"]
            assert (res_line["product_id"], res_line["quantity"]) == (
                before[order_id]["product_id"],
                before[order_id]["quantity"],
            )

        assert api.cancel(to_cancel["order_id"]).json()["status"] == "cancelled"
        assert api.cancel(rolling["order_id"]).json()["status"] == "cancelled"
        assert api.fulfil(to_fulfil["order_id"]).json()["status"] == "fulfilled"
        refused = api.cancel(to_fulfil["order_id"])
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_cancellable"
        # The key stored before the upgrade replays, sent as the seed body or as its one-line cart.
        replay = api.place_cart([(b, 2)], "C5", headers=key)
        assert (replay.status_code, replay.json()["order_id"]) == (201, keyed.json()["order_id"])

        orders = all_orders(api)
        assert_stock_matches_orders(api, [a, b], INITIAL, orders)
        stock = {p: api.product(p) for p in (a, b)}
        assert (stock[a]["available_quantity"], stock[a]["reserved_quantity"]) == (INITIAL, 0)
        assert (stock[b]["available_quantity"], stock[b]["reserved_quantity"]) == (INITIAL - 5 - 1 - 2, 2)
        wait_until(lambda: _audit_judged_everything(api), timeout=30, interval=0.5, what="a clean audit of every order")
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()
        s.inventory_db.drop()
        s.order_db.drop()
