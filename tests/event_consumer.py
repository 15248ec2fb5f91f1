"""A consumer of the event feed for the process-level tests: it follows GET /events from a thread (with
the same loop as `python -m order_service events tail`), and the check that what it saw is every change
the order database recorded, exactly once, in per-order order, without gaps."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from local.processes import wait_until
from order_service.events_tail import follow, http_reader
from tests.topology import ADMIN_TOKEN


class Consumer:
    def __init__(self, order_url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.cursors: list[tuple[int, str]] = []  # (events seen, the cursor after them)
        self._stop = threading.Event()
        self._read = http_reader(order_url, ADMIN_TOKEN)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.failure: BaseException | None = None

    def _run(self) -> None:
        try:
            follow(self._read, None, self.events.append, saved=self._saved, stop=self._stop, wait=1)
        except BaseException as exc:  # shown by the test
            self.failure = exc

    def _saved(self, cursor: str) -> None:
        self.cursors.append((len(self.events), cursor))

    def cursor_after(self, seen: int) -> str:
        """The `next` the consumer was given once it had seen `seen` events."""
        wait_until(lambda: any(n == seen for n, _ in self.cursors), 10, f"the cursor after {seen} events")
        return next(c for n, c in self.cursors if n == seen)

    def __enter__(self) -> Consumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def caught_up_with(self, engine: sa.Engine, timeout: float = 30) -> None:
        """Wait until the consumer has seen as many events as the database holds."""

        def done() -> bool:
            assert self.failure is None, self.failure
            with engine.connect() as conn:
                return len(self.events) >= conn.execute(sa.text("SELECT count(*) FROM order_events")).scalar_one()

        wait_until(done, timeout, "the consumer to read every event")


_EXPECTED = {
    "confirmed": ["order.confirmed"],
    "cancelled": ["order.confirmed", "order.cancelled"],
    "fulfilled": ["order.confirmed", "order.fulfilled"],
    "cancelling": ["order.confirmed"],
    "fulfilling": ["order.confirmed"],
}


def assert_exactly_once_in_order(events: list[dict[str, Any]], engine: sa.Engine) -> None:
    """Every state change the database recorded (each order's status and event count), once, in order."""
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        seen[event["order_id"]].append(event)
    with engine.connect() as conn:
        orders = conn.execute(
            sa.text(
                "SELECT id, status, event_sequence FROM orders WHERE status IN ('confirmed', 'cancelled', 'fulfilled')"
            )
        ).all()
        stored = conn.execute(sa.text("SELECT count(*) FROM order_events")).scalar_one()
    assert stored == len(events)
    assert {f"ORD{o.id:08d}" for o in orders} == set(seen)
    for order in orders:
        got = seen[f"ORD{order.id:08d}"]
        assert [e["sequence"] for e in got] == list(range(1, order.event_sequence + 1)), got
        assert [e["type"] for e in got] == _EXPECTED[order.status], got
        assert got[-1]["data"]["status"] == order.status
