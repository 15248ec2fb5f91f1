"""The consistency audit while orders stream in: a healthy system is never reported inconsistent. Each
stock report inventory gives the audit must be one moment's view (stock columns, ledger and held
reservations from the same snapshot), or a reserve committing between its reads looks like a leak."""

from __future__ import annotations

from tests.saga_helpers import OrderStream, audit
from tests.stack_client import Api

REPORTS = 30


def test_audit_finds_nothing_wrong_while_orders_stream_in(api: Api) -> None:
    product = api.new_product(1_000_000)
    inconsistent: list[dict[str, int]] = []
    audits: list[int] = []
    with OrderStream(api, product, threads=4) as stream:
        stream.wait_for_more_orders(10)
        for i in range(REPORTS):
            r = api.http.get(f"{api.inventory_url}/inventory/audit", headers=api.service, timeout=10)
            assert r.status_code == 200, r.text
            stock = r.json()["products"][product]
            columns = (stock["available_quantity"], stock["reserved_quantity"])
            if columns != (stock["ledger_available"], stock["ledger_reserved"]) or (
                stock["reserved_quantity"] != stock["held_reservations"]
            ):
                inconsistent.append(stock)
            if i % 3 == 0:
                a = audit(api)
                assert a.status_code == 200, a.text
                audits.append(a.status_code)
    assert stream.bad == [] and stream.errors == []
    assert stream.created_count() > 10
    assert inconsistent == []
