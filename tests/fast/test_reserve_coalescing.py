"""The reserves of orders placed at the same moment go to inventory as one call (POST /inventory/reserve/batch),
in-process on both engines: inventory answers each as POST /inventory/reserve would have; the order service
sends the reserves that queued while a call was out as one, answers each order on its own, falls back to one
call per reserve against an inventory without the batch route, and fails every order of a call that met an
outage."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from local.processes import wait_until
from order_service.settings import Settings as OrderSettings
from tests.inprocess import SERVICE, Services, WsgiAnswer, WsgiTransport

BATCH = "/inventory/reserve/batch"


def _post(apps: Services, path: str, body: dict[str, Any]) -> Any:
    return apps.inventory.test_client().post(path, json=body, headers=SERVICE)


def _new_order_id() -> str:
    return f"B{uuid.uuid4().hex[:12]}"


def test_the_batch_route_answers_each_reserve_as_its_own_call_would(apps: Services) -> None:
    product, other = apps.new_product(5), apps.new_product(5)
    retried, tombstone, mismatched = _new_order_id(), _new_order_id(), _new_order_id()
    held = _post(apps, "/inventory/reserve", {"order_id": retried, "product_id": product, "quantity": 1})
    assert held.status_code == 201
    assert (
        _post(apps, "/inventory/reserve", {"order_id": mismatched, "product_id": other, "quantity": 1}).status_code
        == 201
    )
    assert _post(apps, "/inventory/release", {"order_id": tombstone}).status_code == 200
    new_one, cart, short = _new_order_id(), _new_order_id(), _new_order_id()
    asks = [
        {"order_id": new_one, "product_id": product, "quantity": 2},
        {"order_id": retried, "product_id": product, "quantity": 1},
        {"order_id": short, "product_id": product, "quantity": 3},  # 2 left once new_one has its 2
        {"order_id": _new_order_id(), "product_id": "NO-SUCH-PRODUCT", "quantity": 1},
        {"order_id": tombstone, "product_id": product, "quantity": 1},
        {"order_id": mismatched, "product_id": other, "quantity": 2},
        {"order_id": cart, "items": [{"product_id": product, "quantity": 1}, {"product_id": other, "quantity": 1}]},
    ]
    r = _post(apps, BATCH, {"reservations": asks})
    assert r.status_code == 200, r.text
    results = r.json["results"]
    assert [x["status"] for x in results] == [201, 200, 409, 404, 409, 409, 201]
    assert results[0]["reservation"]["order_id"] == new_one and results[0]["reservation"]["quantity"] == 2
    assert results[1]["reservation"] == held.json
    assert results[2]["error"]["code"] == "insufficient_stock"
    assert results[2]["error"]["details"] == [{"product_id": product, "requested": 3, "available": 1}]
    assert results[3]["error"]["code"] == "product_not_found"
    assert results[4]["error"]["code"] == "released"
    assert results[5]["error"]["code"] == "reservation_mismatch"
    assert [line["product_id"] for line in results[6]["reservation"]["lines"]] == [product, other]
    # Exactly what was held moved: 1 (retried) + 2 + 1 (the cart) of the product, 1 + 1 of the other.
    assert apps.stock(product) == (1, 4)
    assert apps.stock(other) == (3, 2)
    assert apps.reservation(short).status_code == 404  # the short one holds nothing


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"reservations": []}, SERVICE, 422),
        ({"reservations": [{"order_id": "B1", "product_id": "P001", "quantity": 1}] * 65}, SERVICE, 422),
        ({"reservations": [{"order_id": "B1", "product_id": "P001", "quantity": "1"}]}, SERVICE, 422),
        ({"reservations": [{"order_id": "B1", "product_id": "P001"}]}, SERVICE, 422),
        ({"reservations": {"order_id": "B1"}}, SERVICE, 422),
        ({"reservations": [{"order_id": "B1", "product_id": "P001", "quantity": 1}]}, {}, 401),
    ],
    ids=["empty", "too-many", "quantity-a-string", "no-quantity", "not-a-list", "no-token"],
)
def test_the_batch_route_refuses_a_bad_body_whole(
    apps: Services, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    product = apps.new_product(5)
    for ask in body["reservations"] if isinstance(body["reservations"], list) else []:
        if isinstance(ask, dict) and "product_id" in ask:
            ask["product_id"] = product
    r = apps.inventory.test_client().post(BATCH, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json["error"]) >= {"code", "message"}
    assert apps.stock(product) == (5, 0)


# --- the order service's side ---------------------------------------------------------------------------------


@dataclass
class Gate:
    """Holds the first inventory call until opened, so that the orders placed meanwhile queue behind it;
    records each call's path and body. `batch_refused` answers the batch route with that status, as an
    inventory from before it does (404) or one whose MAX_BODY_BYTES the batch exceeds (413)."""

    inner: WsgiTransport
    batch_refused: int | None = None
    opened: threading.Event = field(default_factory=threading.Event)
    sent: list[tuple[str, Any]] = field(default_factory=list)

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]) -> WsgiAnswer:
        path = url.split("in-process", 1)[1]
        first = not self.sent
        self.sent.append((path, orjson.loads(body) if body else None))
        if first:
            self.opened.wait(timeout=60)
        if path == BATCH and self.batch_refused is not None:
            return WsgiAnswer(self.batch_refused, b'{"error": {"code": "refused", "message": "Refused"}}')
        return self.inner.request(method, url, body=body, headers=headers)


@pytest.fixture
def gate(apps: Services) -> Iterator[Gate]:
    client = apps.saga.inventory
    gate = Gate(apps.transport)
    original = client._pool
    client._pool = gate
    try:
        yield gate
    finally:
        gate.opened.set()
        client._pool = original


def _place_together(apps: Services, gate: Gate, product: str, count: int) -> list[Any]:
    """`count` orders of one unit each, placed at once: the first one's reserve is held at the gate until
    every other one's has queued behind it. The order service's answers."""
    queued: Callable[[], int] = lambda: apps.saga.inventory._reserves.pending  # noqa: E731
    with ThreadPoolExecutor(count) as pool:
        answers: list[Future[Any]] = [pool.submit(apps.place, product, 1)]
        wait_until(lambda: queued() == 1, 60, "the reserves to queue", interval=0.005)
        answers += [pool.submit(apps.place, product, 1) for _ in range(count - 1)]
        wait_until(lambda: queued() == count, 60, "the reserves to queue", interval=0.005)
        gate.opened.set()
        return [a.result(timeout=60) for a in answers]


def test_orders_placed_together_reserve_in_one_call_each_answered_on_its_own(apps: Services, gate: Gate) -> None:
    product = apps.new_product(6)
    answers = _place_together(apps, gate, product, 8)
    assert [path for path, _ in gate.sent] == ["/inventory/reserve", BATCH]
    carried = gate.sent[1][1]["reservations"]
    assert len(carried) == 7
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 6 + [409] * 2  # 6 in stock: two are refused, each on its own
    refused = [a.json for a in answers if a.status_code == 409]
    assert all(body["error"]["code"] == "insufficient_stock" for body in refused)
    placed = [a.json["order_id"] for a in answers if a.status_code == 201]
    assert all(apps.order_json(order_id)["status"] == "confirmed" for order_id in placed)
    assert apps.stock(product) == (0, 6)
    assert apps.audit().json["consistent"] is True


@pytest.mark.parametrize("status", [404, 413], ids=["no-batch-route", "batch-too-large"])
def test_when_inventory_refuses_the_batch_itself_each_reserve_goes_alone(
    apps: Services, gate: Gate, status: int
) -> None:
    gate.batch_refused = status
    product = apps.new_product(10)
    answers = _place_together(apps, gate, product, 5)
    assert [a.status_code for a in answers] == [201] * 5
    paths = [path for path, _ in gate.sent]
    assert paths[:2] == ["/inventory/reserve", BATCH]
    assert sorted(paths[2:]) == ["/inventory/reserve"] * 4
    assert apps.stock(product) == (5, 5)


def test_an_outage_fails_every_order_of_the_call(apps: Services, gate: Gate) -> None:
    product = apps.new_product(10)
    apps.transport.down = True  # the held first call and the batch after it both meet a refused connection
    answers = _place_together(apps, gate, product, 4)
    assert [a.status_code for a in answers] == [503] * 4
    assert {a.json["error"]["code"] for a in answers} == {"inventory_unavailable"}
    assert BATCH in [path for path, _ in gate.sent]
    apps.transport.down = False
    assert apps.stock(product) == (10, 0)


# A call at its worst: 3 tries x (1 s + 3 s) + 2 pauses x 0.5 s = 13 s.
_SLOW_CALLS = {
    "inventory_connect_timeout": 1,
    "inventory_read_timeout": 3,
    "inventory_retries": 2,
    "inventory_backoff_max": 0.5,
}


def test_the_recovery_grace_must_outlast_a_reserve_queued_behind_a_call() -> None:
    """The worker must not act on an order whose request may still be talking to inventory: with reserves
    going together, a request may wait for the call ahead of it before its own."""
    assert OrderSettings(**_SLOW_CALLS, recovery_grace_seconds=30).worst_reserve() == 26
    with pytest.raises(ValidationError, match="RECOVERY_GRACE_SECONDS"):
        OrderSettings(**_SLOW_CALLS, recovery_grace_seconds=20)
    alone = OrderSettings(**_SLOW_CALLS, inventory_reserve_batch=1, recovery_grace_seconds=20)
    assert alone.worst_reserve() == 13
    # 23 other threads (16 app threads and 8 spare ones), at most 8 reserves a call: up to three calls ahead.
    crowded = OrderSettings(
        **_SLOW_CALLS, threads=16, spare_threads=8, inventory_reserve_batch=8, recovery_grace_seconds=60
    )
    assert crowded.worst_reserve() == 52
    with pytest.raises(ValidationError, match="RECOVERY_GRACE_SECONDS"):
        OrderSettings(**_SLOW_CALLS, spare_threads=16, recovery_grace_seconds=30)  # 23 others: two calls ahead
