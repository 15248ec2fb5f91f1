"""The event feed, in-process on each engine: oldest first from a cursor, the same events for the same
cursor, `next` resuming, its tokens, its JSON refusals, the long poll's cap, and 410 once retention has
pruned past a cursor."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from local.processes import wait_until
from order_service import retention
from order_service.events import Cursor
from tests.inprocess import ADMIN, Services, Templates, services

EVENTS_TOKEN = "fast-events-token"
READER = {"Authorization": f"Bearer {EVENTS_TOKEN}"}


@pytest.fixture
def feed(templates: Templates, tmp_path: Path) -> Iterator[Services]:
    with services(templates, tmp_path, {"events_token": EVENTS_TOKEN, "events_max_waiters": 1}) as s:
        yield s


def _settled(apps: Services) -> None:
    """On PostgreSQL the feed serves only rows below the oldest writer running anywhere on the server
    (docs/events.md): wait until every event written is below it, so that a page can be compared exactly.
    Another session's transaction on a shared server delays what is served, never changes it."""
    engine = apps.order_engine
    if engine.dialect.name != "postgresql":
        return
    held = sa.text(
        "SELECT count(*) FROM order_events WHERE tx >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
    )

    def settled() -> bool:
        with engine.connect() as conn:
            return not conn.execute(held).scalar_one()

    wait_until(settled, 60, "the events' transactions to settle", interval=0.05)


def _read(apps: Services, headers: dict[str, str] = READER, **query: Any) -> Any:
    _settled(apps)
    return apps.order.test_client().get("/events", query_string=query, headers=headers)


def _page(apps: Services, **query: Any) -> dict[str, Any]:
    r = _read(apps, **query)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json
    return body


def test_the_feed_serves_each_change_oldest_first_and_resumes_from_next(feed: Services) -> None:
    product = feed.new_product(10)
    first = feed.place(product, 1).json["order_id"]
    second = feed.place(product, 2).json["order_id"]
    assert feed.cancel(first).status_code == 200
    assert feed.fulfil(second).status_code == 200

    whole = _page(feed)
    assert [(e["id"], e["type"]) for e in whole["events"]] == [
        (f"{first}:1", "order.confirmed"),
        (f"{second}:1", "order.confirmed"),
        (f"{first}:2", "order.cancelled"),
        (f"{second}:2", "order.fulfilled"),
    ]
    cancelled = whole["events"][2]
    assert cancelled["specversion"] == "1.0" and cancelled["source"] == "/orders"
    assert (cancelled["order_id"], cancelled["sequence"]) == (first, 2)
    assert cancelled["data"] == feed.order_json(first)

    # Two at a time: the same events, and the same cursor answers the same page again.
    page1 = _page(feed, limit=2)
    assert page1["events"] == whole["events"][:2]
    assert _page(feed, limit=2, after=page1["next"]) == _page(feed, limit=2, after=page1["next"])
    page2 = _page(feed, limit=2, after=page1["next"])
    assert page2["events"] == whole["events"][2:]
    # At the end: nothing new, and `next` stays, so a later read from it finds the next change.
    end = _page(feed, after=page2["next"])
    assert end == {"events": [], "next": page2["next"]}
    third = feed.place(product, 1).json["order_id"]
    assert [e["id"] for e in _page(feed, after=end["next"])["events"]] == [f"{third}:1"]


def test_the_feed_needs_the_events_or_admin_token_and_the_events_token_reads_nothing_else(feed: Services) -> None:
    assert _read(feed, headers={}).status_code == 401
    assert _read(feed, headers={"Authorization": "Bearer wrong"}).json["error"]["code"] == "unauthorized"
    assert _read(feed, headers=ADMIN).status_code == 200
    assert _read(feed).status_code == 200
    order_id = feed.place(feed.new_product(1), 1).json["order_id"]
    assert feed.order.test_client().post(f"/orders/{order_id}/fulfil", headers=READER).status_code == 401
    assert feed.order.test_client().get("/admin/audit", headers=READER).status_code == 401


@pytest.mark.parametrize(
    "after",
    ["nonsense", Cursor(0, 1).encode() + "A", "MS4x", "", "Mi4wLjA", "MS4tMS4w", "MS45OTk5OTk5OTk5OTk5OTk5OTk5LjA"],
)
def test_a_cursor_the_feed_did_not_give_is_refused_as_json(feed: Services, after: str) -> None:
    r = _read(feed, after=after)
    assert r.status_code == 422, r.text
    assert r.json["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"wait": 21}, {"wait": -1}, {"limit": "x"}])
def test_limits_out_of_range_are_refused_as_json(feed: Services, query: dict[str, Any]) -> None:
    r = _read(feed, **query)
    assert r.status_code == 422, r.text
    assert r.json["error"]["code"] == "validation_error"


def test_a_long_poll_beyond_the_waiter_cap_is_told_to_come_back(templates: Templates, tmp_path: Path) -> None:
    with services(templates, tmp_path, {"events_token": EVENTS_TOKEN, "events_max_waiters": 0}) as apps:
        r = _read(apps, wait=1)
        assert r.status_code == 429, r.text
        assert r.json["error"]["code"] == "too_many_waiters"
        assert r.headers["Retry-After"] == "1"
        # Without waiting, or with an event to give, no waiter is needed.
        assert _read(apps).status_code == 200
        apps.place(apps.new_product(1), 1)
        assert len(_read(apps, wait=1).json["events"]) == 1


def test_a_long_poll_with_nothing_new_answers_an_empty_page_at_the_same_cursor(feed: Services) -> None:
    feed.place(feed.new_product(1), 1)
    at_end = _page(feed)["next"]
    assert _page(feed, after=at_end, wait=0.3) == {"events": [], "next": at_end}


def _age_events(apps: Services, hours: float) -> None:
    with apps.order_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE order_events SET occurred_at = :t"),
            {"t": dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)},
        )


def test_retention_prunes_old_events_and_a_cursor_behind_it_is_gone(feed: Services) -> None:
    product = feed.new_product(10)
    old = [feed.place(product, 1).json["order_id"] for _ in range(3)]
    start = _page(feed, limit=1)["next"]  # a reader that read one event, then stopped
    _age_events(feed, feed.saga.settings.events_retention_hours + 1)
    new = feed.place(product, 1).json["order_id"]

    pruned = retention.run_retention(feed.order_engine, feed.saga.inventory, feed.saga.settings)
    assert pruned.events == 3
    r = _read(feed, after=start)
    assert r.status_code == 410, r.text
    assert r.json["error"]["code"] == "gone"
    # From the start, the feed serves what it keeps; its `next` is not gone.
    fresh = _page(feed)
    assert [e["order_id"] for e in fresh["events"]] == [new]
    assert _page(feed, after=fresh["next"])["events"] == []
    # The orders themselves stay, and their sequence goes on after the pruned events.
    assert all(feed.order_json(o)["status"] == "confirmed" for o in old)
    assert feed.cancel(old[0]).status_code == 200
    assert [e["id"] for e in _page(feed, after=fresh["next"])["events"]] == [f"{old[0]}:2"]


def test_with_a_broker_only_published_events_are_pruned(templates: Templates, tmp_path: Path) -> None:
    env = {"events_token": EVENTS_TOKEN, "events_broker_url": "nats://127.0.0.1:1"}
    with services(templates, tmp_path, env) as apps:
        product = apps.new_product(10)
        orders = [apps.place(product, 1).json["order_id"] for _ in range(2)]
        _age_events(apps, apps.saga.settings.events_retention_hours + 1)
        with apps.order_engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE order_events SET published_at = :t WHERE order_id = :o"),
                {"t": dt.datetime.now(dt.UTC), "o": int(orders[0][3:])},
            )
        assert retention.run_retention(apps.order_engine, apps.saga.inventory, apps.saga.settings).events == 1
        assert [e["order_id"] for e in _page(apps)["events"]] == [orders[1]]


def test_expired_idempotency_keys_are_cleared_and_their_orders_stay(feed: Services) -> None:
    product = feed.new_product(10)
    keyed = feed.place(product, 1, headers={"Idempotency-Key": "k-1"}).json["order_id"]
    live = feed.place(product, 1, headers={"Idempotency-Key": "k-2"}).json["order_id"]
    with feed.order_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE orders SET key_expires_at = :t WHERE id = :i"),
            {"t": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1), "i": int(keyed[3:])},
        )
    assert retention.run_retention(feed.order_engine, feed.saga.inventory, feed.saga.settings).keys == 1
    with feed.order_engine.connect() as conn:
        keys = dict(conn.execute(sa.text("SELECT id, idempotency_key FROM orders")).all())
    assert keys == {int(keyed[3:]): None, int(live[3:]): "k-2"}
    assert feed.order_json(keyed)["status"] == "confirmed"
    # The key is free again: a new request with it places a new order.
    again = feed.place(product, 1, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 201 and again.json["order_id"] not in (keyed, live)


def test_the_outbox_backlog_shows_in_metrics_and_the_console(feed: Services) -> None:
    product = feed.new_product(10)
    order_id = feed.place(product, 1).json["order_id"]
    feed.cancel(order_id)
    _age_events(feed, 1)  # an hour old
    metrics = feed.order.test_client().get("/metrics").get_data(as_text=True)
    assert "order_events_unpublished 2.0" in metrics
    age = next(line for line in metrics.splitlines() if line.startswith("order_events_oldest_unpublished_age_seconds"))
    assert float(age.split()[1]) >= 3600
    outbox = feed.order.test_client().get("/admin/saga", headers=ADMIN).json["outbox"]
    assert (outbox["broker"], outbox["unpublished"], outbox["kept"]) == (False, 2, 2)
