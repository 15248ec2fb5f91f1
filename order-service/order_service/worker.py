"""The recovery worker: `python -m order_service worker`, one process per replica (its own Deployment).

It finishes what a request left behind (a crash, a timeout, inventory down) once an order has not
moved for the grace period: pending → confirmed or failed, failing → failed, cancelling → cancelled,
fulfilling → fulfilled. Claims are leases in the database, so any number of workers can run.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from typing import Any

from order_service import metrics, storage
from order_service.inventory_client import InventoryRefused, InventoryUnavailable
from order_service.saga import OrderSaga

log = logging.getLogger(__name__)


def run_pass(saga: OrderSaga) -> dict[str, int]:
    """Claim and resolve one batch of unfinished orders; counts of what was done."""
    settings = saga.settings
    claimed = storage.claim_unfinished(
        saga.engine,
        older_than=dt.timedelta(seconds=settings.recovery_grace_seconds),
        lease=dt.timedelta(seconds=settings.worst_inventory_call() * 2 + 5),
        limit=settings.worker_batch,
    )
    counts: dict[str, int] = {}
    for order in claimed:
        try:
            action = _resolve(saga, order)
        except (InventoryUnavailable, InventoryRefused) as exc:
            action = "deferred"
            log.warning(
                "recovery deferred",
                extra={"fields": {"order_id": storage.format_order_id(order.id), "reason": str(exc)}},
            )
        counts[action] = counts.get(action, 0) + 1
        metrics.worker_action(action)
        if action not in ("deferred", "skipped"):
            metrics.saga_outcome("recovered")
        log.info(
            "recovered order",
            extra={"fields": {"order_id": storage.format_order_id(order.id), "from": order.status, "action": action}},
        )
    return counts


def _resolve(saga: OrderSaga, order: Any) -> str:
    if order.status == storage.PENDING:
        return saga.resolve_pending(order)
    if order.status == storage.FAILING:
        return "failed" if saga.finish_failing(order) else "deferred"
    if order.status in (storage.CANCELLING, storage.FULFILLING):
        done = saga.finish(order)
        return "deferred" if done is None else done.status
    return "skipped"


def run_forever(saga: OrderSaga) -> int:
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("worker stopping", extra={"fields": {"signal": signum}})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if saga.settings.worker_metrics_port:
        from prometheus_client import start_http_server

        # The worker is its own Deployment: it serves its own /metrics for the scrape annotations.
        start_http_server(saga.settings.worker_metrics_port, addr=saga.settings.host)
    log.info("worker started", extra={"fields": {"grace_seconds": saga.settings.recovery_grace_seconds}})
    while not stop.is_set():
        try:
            run_pass(saga)
        except Exception:  # a database outage must not end the worker; it retries next pass
            log.exception("worker pass failed")
        stop.wait(saga.settings.worker_interval_seconds)
    return 0
