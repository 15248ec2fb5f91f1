"""The admin API behind the operator console (order_service/console/api.py), over HTTP against both services
on each engine: the token it needs, the saga's health, stock with sold units from inventory's ledger, and
restock / price change passed on to inventory with inventory's own answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from order_service import storage
from order_service.domain import UNFINISHED, OrderStatus, format_order_id
from service_common.storage import utcnow
from tests.markers import ENGINES
from tests.stack_client import Api
from tests.topology import SERVICE_TOKEN, Stack, stack, wait_until


@pytest.fixture(scope="module", params=ENGINES)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """No recovery worker: an order left in flight on purpose must stay where the test put it."""
    with stack(Path(tmp_path_factory.mktemp(f"console-api-{request.param}")), request.param) as s:
        yield s


@pytest.fixture
def live_api(live: Stack) -> Api:
    return Api.of(live)


def _get(live_api: Api, path: str, **kw: Any) -> requests.Response:
    return requests.get(f"{live_api.order_url}{path}", headers=kw.pop("headers", live_api.admin), timeout=30, **kw)


def _send(live_api: Api, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.request(
        method, f"{live_api.order_url}{path}", json=body, headers=headers or live_api.admin, timeout=30
    )


def test_the_console_api_needs_the_admin_token(live_api: Api) -> None:
    calls = [
        ("GET", "/admin/saga", None),
        ("GET", "/admin/products", None),
        ("POST", "/admin/products/P001/restock", {"quantity": 1}),
        ("PATCH", "/admin/products/P001", {"price": 1.0}),
    ]
    for headers in ({}, {"Authorization": f"Bearer {SERVICE_TOKEN}"}, {"Authorization": "Bearer wrong"}):
        for method, path, body in calls:
            r = requests.request(method, f"{live_api.order_url}{path}", json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
    assert live_api.product("P001")["price"] == 999.99


def test_saga_health_counts_every_state_and_finds_the_oldest_order_in_flight(live_api: Api, live: Stack) -> None:
    product_id = live_api.new_product(20)
    confirmed = live_api.place(product_id, 1).json()["order_id"]
    cancelled = live_api.place(product_id, 1).json()["order_id"]
    assert live_api.cancel(cancelled).status_code == 200
    # An order a request left `cancelling` two minutes ago, as a crash would leave it.
    engine = live.order_db.engine()
    try:
        with engine.begin() as conn:
            then = utcnow() - dt.timedelta(seconds=120)
            stuck = conn.execute(
                storage.orders.insert()
                .values(
                    product_id=product_id,
                    quantity=1,
                    customer_id="C-stuck",
                    status=OrderStatus.CANCELLING.value,
                    created_at=then,
                    updated_at=then,
                )
                .returning(storage.orders.c.id)
            ).scalar_one()
        r = _get(live_api, "/admin/saga")
        assert r.status_code == 200, r.text
        health = r.json()
        assert set(health["counts"]) == {s.value for s in OrderStatus}
        for state in OrderStatus:
            assert health["counts"][state.value] == live_api.orders(status=state.value, limit=1)["total_count"], state
        assert health["in_flight"] == sum(health["counts"][s.value] for s in UNFINISHED) >= 1
        oldest = health["oldest_in_flight"]
        assert oldest["order_id"] == format_order_id(stuck)
        assert oldest["status"] == "cancelling"
        assert oldest["age_seconds"] >= 120
        assert health["recovery_grace_seconds"] == 30
        assert live_api.order(confirmed)["status"] == "confirmed"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(storage.orders).where(storage.orders.c.customer_id == "C-stuck"))
        engine.dispose()
    assert _get(live_api, "/admin/saga").json()["oldest_in_flight"] is None


def test_stock_shows_sold_units_from_the_ledger_and_marks_low_stock(live_api: Api) -> None:
    product_id = live_api.new_product(14, price=2.5)
    order_id = live_api.place(product_id, 3).json()["order_id"]
    assert live_api.fulfil(order_id).status_code == 200
    held = live_api.place(product_id, 1).json()["order_id"]
    r = _get(live_api, "/admin/products")
    assert r.status_code == 200, r.text
    stock = r.json()
    assert stock["low_stock_threshold"] == 10
    item = next(p for p in stock["products"] if p["product_id"] == product_id)
    assert item == {
        "product_id": product_id,
        "name": "Test product",
        "price": 2.5,
        "available_quantity": 10,
        "reserved_quantity": 1,
        "sold_quantity": 3,
        "low_stock": True,
    }
    laptop = next(p for p in stock["products"] if p["product_id"] == "P001")
    assert laptop["low_stock"] is False
    assert live_api.cancel(held).status_code == 200


def test_restock_and_price_change_reach_inventory_and_pass_on_its_refusals(live_api: Api) -> None:
    product_id = live_api.new_product(5, price=10.0)
    r = _send(live_api, "POST", f"/admin/products/{product_id}/restock", {"quantity": 7})
    assert r.status_code == 200, r.text
    assert r.json()["available_quantity"] == 12 == live_api.product(product_id)["available_quantity"]
    r = _send(live_api, "PATCH", f"/admin/products/{product_id}", {"price": 8.75})
    assert r.status_code == 200, r.text
    assert live_api.product(product_id)["price"] == 8.75

    refusals = [
        ("POST", "/admin/products/NOPE/restock", {"quantity": 1}, 404, "product_not_found"),
        ("POST", "/admin/products/%3Cx%3E/restock", {"quantity": 1}, 404, "product_not_found"),
        ("POST", f"/admin/products/{product_id}/restock", {"quantity": 0}, 422, "validation_error"),
        ("POST", f"/admin/products/{product_id}/restock", {"quantity": "1"}, 422, "validation_error"),
        ("POST", f"/admin/products/{product_id}/restock", {"quantity": 2_000_000_000}, 422, "validation_error"),
        ("PATCH", f"/admin/products/{product_id}", {"price": 1.234}, 422, "validation_error"),
        ("PATCH", f"/admin/products/{product_id}", {}, 422, "validation_error"),
        ("PATCH", "/admin/products/NOPE", {"price": 1}, 404, "product_not_found"),
    ]
    for method, path, body, status, code in refusals:
        r = _send(live_api, method, path, body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (method, path, body, r.text)
    # Inventory's own limit, passed on as inventory said it.
    r = _send(live_api, "POST", f"/admin/products/{product_id}/restock", {"quantity": 2_000_000_000})
    assert r.json()["error"]["message"] == "quantity: must be at most 1000000000"
    assert live_api.product(product_id)["available_quantity"] == 12
    assert live_api.product(product_id)["price"] == 8.75


def test_while_inventory_is_down_the_console_api_answers_503_and_says_to_check_a_restock(
    live_api: Api, live: Stack
) -> None:
    live.inventory.stop()
    try:
        r = _send(live_api, "POST", "/admin/products/P003/restock", {"quantity": 1})
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "2"
        assert r.json()["error"] == {
            "code": "inventory_unavailable",
            "message": "The inventory service did not confirm the restock; read the stock before restocking again.",
        }
        r = _get(live_api, "/admin/products")
        assert r.status_code == 503 and r.json()["error"]["code"] == "inventory_unavailable"
        assert _get(live_api, "/admin/saga").status_code == 200  # the order service's own figures still answer
        # The read was retried; the restock, which is not idempotent, was sent once.
        retries = requests.get(f"{live_api.order_url}/metrics", timeout=10).text
        assert 'inventory_call_retries_total{operation="products"}' in retries
        assert 'operation="restock"' in retries  # counted as a call ...
        assert 'inventory_call_retries_total{operation="restock"}' not in retries  # ... never retried
    finally:
        live.inventory.start()


def test_saga_health_lists_each_recovery_workers_heartbeat(live_api: Api, live: Stack) -> None:
    """A running worker records its heartbeat in the order database; one that stopped beating is stale."""
    engine = live.order_db.engine()
    try:
        with engine.begin() as conn:
            then = utcnow() - dt.timedelta(minutes=10)
            conn.execute(
                storage.worker_heartbeats.insert().values(
                    worker_id="gone-pod:1", started_at=then, beat_at=then, stale_after_seconds=45.0
                )
            )
        assert live.worker is not None
        live.worker.start()
        try:
            wait_until(
                lambda: any(w["fresh"] for w in _get(live_api, "/admin/saga").json()["workers"]),
                what="the worker's heartbeat",
            )
        finally:
            live.worker.stop()
        workers = {w["worker_id"]: w for w in _get(live_api, "/admin/saga").json()["workers"]}
        assert workers["gone-pod:1"]["fresh"] is False and workers["gone-pod:1"]["age_seconds"] >= 600
        (running,) = (w for worker_id, w in workers.items() if worker_id != "gone-pod:1")
        assert running["fresh"] is True and running["stale_after_seconds"] > 0
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(storage.worker_heartbeats))
        engine.dispose()
