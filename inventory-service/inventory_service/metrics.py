"""Inventory metrics: stock per product, read from the database at scrape time (never a per-worker
gauge, which would disagree between workers and replicas)."""

from __future__ import annotations

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
