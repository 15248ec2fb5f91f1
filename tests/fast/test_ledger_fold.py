"""Retention of inventory's stock ledger, in-process on each engine: old rows fold into one balance row per
product, in batches, and every figure the audit and the console read from the ledger stays the same."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from inventory_service import storage
from service_common.storage import utcnow
from tests.inprocess import SERVICE, Services


def test_folding_the_ledger_keeps_its_sums_sold_units_and_the_audit(apps: Services) -> None:
    a, b = apps.new_product(10), apps.new_product(10)
    orders = [apps.place(p, q).json["order_id"] for p, q in ((a, 2), (b, 3), (a, 1), (b, 1))]
    assert apps.cancel(orders[0]).status_code == 200
    assert apps.fulfil(orders[1]).status_code == 200
    assert apps.fulfil(orders[2]).status_code == 200
    engine = apps.inventory.extensions["engine"]
    before = storage.stock_report(engine)

    batches = 0
    while True:
        _folded, more = storage.fold_ledger(engine, older_than=utcnow() + dt.timedelta(seconds=1), batch=3)
        batches += 1
        if not more:
            break
    assert batches > 1  # several short transactions, not one
    assert storage.stock_report(engine) == before
    assert (before[a]["sold_quantity"], before[b]["sold_quantity"]) == (1, 3)
    with engine.connect() as conn:
        kinds = conn.execute(sa.text("SELECT product_id, kind FROM stock_ledger ORDER BY product_id")).all()
    # The seeded catalogue's rows too: every product's ledger is now its one balance row.
    assert {tuple(k) for k in kinds} >= {(a, "balance"), (b, "balance")}
    assert {k.kind for k in kinds} == {"balance"} and len({k.product_id for k in kinds}) == len(kinds)

    # Later changes land after the balance, and a second fold adds them into it.
    assert apps.cancel(orders[3]).status_code == 200
    after = storage.stock_report(engine)
    storage.fold_ledger(engine, older_than=utcnow() + dt.timedelta(seconds=1), batch=100)
    assert storage.stock_report(engine) == after
    apps.age_orders(3600)
    assert apps.audit().json["consistent"] is True


def test_the_fold_endpoint_needs_the_service_token_and_folds_only_rows_past_retention(apps: Services) -> None:
    apps.place(apps.new_product(5), 1)
    client = apps.inventory.test_client()
    assert client.post("/inventory/ledger/fold").status_code == 401
    r = client.post("/inventory/ledger/fold", headers=SERVICE)
    assert r.status_code == 200, r.text
    assert r.json == {"folded_rows": 0, "more": False}  # nothing is 30 days old yet
