"""The transactional outbox, in-process: every state change a consumer acts on writes one event row in
the transaction that makes it, numbered per order without gaps, carrying the order as the API shows it;
refused orders raise none, and a cart raises one event, not one per line."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from tests.inprocess import Services


def _events(apps: Services, order_id: str) -> list[dict[str, Any]]:
    number = int(order_id.removeprefix("ORD"))
    with apps.order_engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT sequence, type, data FROM order_events WHERE order_id = :n ORDER BY position"),
            {"n": number},
        ).all()
    return [{"sequence": r.sequence, "type": r.type, "data": json.loads(r.data)} for r in rows]


def test_confirm_then_cancel_raise_two_events_in_sequence_with_the_order_as_shown(apps: Services) -> None:
    product = apps.new_product(5)
    placed = apps.place(product, 2)
    assert placed.status_code == 201, placed.text
    order_id = placed.json["order_id"]
    assert _events(apps, order_id) == [{"sequence": 1, "type": "order.confirmed", "data": placed.json}]
    # The event's data, described before it was written, is the order as stored.
    assert placed.json == apps.order_json(order_id)

    assert apps.cancel(order_id).status_code == 200
    events = _events(apps, order_id)
    assert [(e["sequence"], e["type"]) for e in events] == [(1, "order.confirmed"), (2, "order.cancelled")]
    assert events[1]["data"] == apps.order_json(order_id)


def test_a_fulfilled_cart_raises_one_event_per_change_not_per_line(apps: Services) -> None:
    a, b = apps.new_product(5), apps.new_product(5)
    r = apps.order.test_client().post(
        "/orders", json={"items": [{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 2}]}
    )
    assert r.status_code == 201, r.text
    order_id = r.json["order_id"]
    assert apps.fulfil(order_id).status_code == 200
    events = _events(apps, order_id)
    assert [(e["sequence"], e["type"]) for e in events] == [(1, "order.confirmed"), (2, "order.fulfilled")]
    assert len(events[1]["data"]["items"]) == 2
    assert events[1]["data"]["status"] == "fulfilled"


def test_refused_orders_and_refused_steps_raise_no_event(apps: Services) -> None:
    product = apps.new_product(1)
    short = apps.place(product, 2)
    assert short.status_code == 409
    with apps.order_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders WHERE status = 'rejected'")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM order_events")).scalar_one() == 0

    placed = apps.place(product, 1)
    order_id = placed.json["order_id"]
    assert apps.cancel(order_id).status_code == 200
    assert apps.cancel(order_id).status_code == 200  # a replayed cancel changes nothing
    assert apps.fulfil(order_id).status_code == 409
    assert [e["type"] for e in _events(apps, order_id)] == ["order.confirmed", "order.cancelled"]
