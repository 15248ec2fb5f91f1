"""Order metrics: saga outcomes, calls to inventory (results, retries, breaker state), worker actions, the
event relay.

Created on first use (never at import), so `serve` can point prometheus-client at its multiprocess
directory first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

_created: dict[str, Any] | None = None
_creating = threading.Lock()


def _metrics() -> dict[str, Any]:
    # Created once per process under a lock: the first calls come from request threads at once, and
    # a second registration of the same names raises DuplicateTimeseries (functools.cache would let
    # two threads both create them, and that request would answer 500).
    global _created
    if _created is None:
        with _creating:
            if _created is None:
                _created = _create()
    return _created


def _create() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "saga": Counter("order_saga_outcomes_total", "Orders reaching an outcome.", ["outcome"]),
        "calls": Counter("inventory_calls_total", "Calls to inventory by result.", ["operation", "result"]),
        "retries": Counter("inventory_call_retries_total", "Retries of calls to inventory.", ["operation"]),
        "breaker": Gauge(
            # livemax: a worker that died with its circuit open must not keep the figure at 1.
            "inventory_circuit_open",
            "1 while the circuit to inventory is open.",
            multiprocess_mode="livemax",
        ),
        "worker": Counter("order_worker_actions_total", "What the recovery worker did.", ["action"]),
        # The event relay (order_service.relay), in the recovery worker's process.
        "published": Counter(
            "order_events_published_total",
            "Order events the relay published, by the broker's ack: stored, or duplicate (an id it already had).",
            ["ack"],
        ),
        "publish_retries": Counter(
            "order_events_publish_retries_total", "Attempts of the relay made again after a failed one."
        ),
        "publish_failures": Counter(
            "order_events_publish_failures_total",
            "Failed attempts of the relay (connect, stream, timeout, error).",
            ["reason"],
        ),
        "lines": Histogram(
            "order_lines_per_order", "Lines (products) of each order placed.", buckets=(1, 2, 3, 5, 10, 20, 50, 100)
        ),
        "reserves_per_call": Histogram(
            "inventory_reserves_per_call",
            "Reserves one call to inventory carried (reserves of orders placed at the same moment go together).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
        ),
        "writes": Histogram(
            "order_writes_per_transaction",
            "Order writes (new, confirmed, moved) made in one database transaction (group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        ),
    }


def saga_outcome(outcome: str) -> None:
    """confirmed, rejected, failed, cancelled, fulfilled, recovered."""
    _metrics()["saga"].labels(outcome).inc()


def inventory_call(operation: str, result: str) -> None:
    _metrics()["calls"].labels(operation, result).inc()


def reserves_per_call(count: int) -> None:
    _metrics()["reserves_per_call"].observe(count)


def inventory_retry(operation: str) -> None:
    _metrics()["retries"].labels(operation).inc()


def breaker_open(is_open: bool) -> None:
    _metrics()["breaker"].set(1 if is_open else 0)


def worker_action(action: str) -> None:
    _metrics()["worker"].labels(action).inc()


def order_lines(count: int) -> None:
    _metrics()["lines"].observe(count)


def writes_per_transaction(count: int) -> None:
    _metrics()["writes"].observe(count)


class OutboxCollector:
    """The outbox's figures, read from the database at scrape time (the same on every replica: take the
    max, not the sum): events not yet published by the relay (P13) and the age of the oldest of them, and
    the events the feed keeps (retention prunes them)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from order_service.retention import outbox_figures

        figures = outbox_figures(self.engine)
        yield GaugeMetricFamily(
            "order_events_unpublished", "Events the broker relay has not published yet.", figures.unpublished
        )
        yield GaugeMetricFamily(
            "order_events_oldest_unpublished_age_seconds",
            "Age of the oldest event not published yet (0 when there is none).",
            figures.oldest_unpublished_age,
        )
        yield GaugeMetricFamily("order_events_kept", "Events the outbox keeps (the feed's retention).", figures.kept)


def event_published(duplicate: bool) -> None:
    _metrics()["published"].labels("duplicate" if duplicate else "stored").inc()


def event_publish_retry() -> None:
    _metrics()["publish_retries"].inc()


def event_publish_failure(reason: str) -> None:
    _metrics()["publish_failures"].labels(reason).inc()
