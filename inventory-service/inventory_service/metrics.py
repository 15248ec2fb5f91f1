"""Inventory metrics: stock per product, read from the database at scrape time (never a per-worker
gauge, which would disagree between workers and replicas); and how many reserves each transaction held
(a histogram each worker adds to, summed across workers by the multiprocess collector)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

from inventory_service import storage


class StockCollector:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        available = GaugeMetricFamily("inventory_available_quantity", "Units available.", labels=["product_id"])
        reserved = GaugeMetricFamily("inventory_reserved_quantity", "Units held for orders.", labels=["product_id"])
        for product in storage.list_products(self.engine):
            available.add_metric([product.product_id], product.available_quantity)
            reserved.add_metric([product.product_id], product.reserved_quantity)
        yield available
        yield reserved


# Up to RESERVE_BATCH_MAX's default (64) and past it.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@functools.cache
def reserves_per_transaction() -> Any:
    """Histogram of reserves per transaction (1: alone; more: a group commit). Created on first use, after
    `serve` has chosen the metrics directory."""
    from prometheus_client import Histogram

    return Histogram(
        "inventory_reserves_per_transaction",
        "Reserves decided in one database transaction (group commit of concurrent reserves).",
        buckets=_BATCH_BUCKETS,
    )
