"""The recovery worker: `python -m order_service worker`, one process per replica (its own Deployment).

It finishes what a request left behind (a crash, a timeout, inventory down) once an order has not
moved for the grace period: pending → confirmed or failed, failing → failed, cancelling → cancelled,
fulfilling → fulfilled. Claims are leases in the database, so any number of workers can run.
Every RETENTION_INTERVAL_SECONDS it also runs a retention pass (retention.py): old events, expired
Idempotency-Keys, and inventory's ledger fold, in short batches.

With WORKER_METRICS_PORT set it serves, for its Deployment: `/metrics`, `/health/live` (the loop's
heartbeat is fresh: it fails once the heartbeat is older than 3 heartbeat intervals, even though this
HTTP server still answers) and `/health/ready` (heartbeat fresh, database up, schema at head).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response

from order_service import MIGRATIONS, metrics, retention, storage
from order_service.domain import Order, OrderStatus
from order_service.inventory_client import InventoryRefused, InventoryUnavailable
from order_service.saga import OrderSaga
from service_common.errors import register_error_handlers
from service_common.jsonio import json_response
from service_common.storage import utcnow

log = logging.getLogger(__name__)


# Liveness fails once the heartbeat is older than this many heartbeat intervals.
STALE_AFTER_INTERVALS = 3


class Heartbeat:
    """When the worker's loop last showed it was moving: at each pass and after each order it resolves."""

    def __init__(self, interval: float) -> None:
        self.interval = interval  # the longest a healthy loop goes between two beats
        self._last: float | None = None

    def beat(self) -> None:
        self._last = time.monotonic()

    def age(self) -> float | None:
        return None if self._last is None else time.monotonic() - self._last

    def fresh(self) -> bool:
        age = self.age()
        return age is not None and age <= STALE_AFTER_INTERVALS * self.interval

    def stale_after(self) -> float:
        return STALE_AFTER_INTERVALS * self.interval

    def report(self) -> dict[str, Any]:
        age = self.age()
        return {
            "heartbeat_age_seconds": None if age is None else round(age, 3),
            "stale_after_seconds": self.stale_after(),
        }


class PublishedHeartbeat:
    """Also records the heartbeat in the order database (a row per worker process), at most every few
    seconds, so the order service can show every worker's (GET /admin/saga, the console)."""

    def __init__(self, heartbeat: Heartbeat, engine: Any) -> None:
        self.heartbeat = heartbeat
        self._engine = engine
        self._worker_id = f"{socket.gethostname()}:{os.getpid()}"[:128]
        self._started = utcnow()
        self._every = min(5.0, heartbeat.interval / 2)
        self._published: float | None = None

    def beat(self) -> None:
        self.heartbeat.beat()
        now = time.monotonic()
        if self._published is not None and now - self._published < self._every:
            return
        self._published = now
        try:
            storage.record_heartbeat(self._engine, self._worker_id, self._started, self.heartbeat.stale_after())
        except Exception as exc:  # the database may be down; the loop's own probes still tell
            log.warning("heartbeat not recorded", extra={"fields": {"reason": type(exc).__name__}})


def probe_app(heartbeat: Heartbeat, ready_checks: Callable[[], dict[str, str]]) -> Flask:
    """The worker's own small HTTP app: its probes and its metrics (errors in the services' JSON shape)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    app = Flask("order-worker")
    register_error_handlers(app)

    @app.get("/health/live")
    def live() -> Response:
        if heartbeat.fresh():
            return json_response({"status": "ok", **heartbeat.report()})
        return json_response({"status": "stale", **heartbeat.report()}, 503)

    @app.get("/health/ready")
    def ready() -> Response:
        checks = {"heartbeat": "ok" if heartbeat.fresh() else "stale", **ready_checks()}
        ok = all(v == "ok" for v in checks.values())
        return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    @app.get("/metrics")
    def scrape() -> Response:
        return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

    return app


def serve_probes(app: Flask, host: str, port: int) -> None:
    """Serve `app` from a daemon thread: it keeps answering whatever the loop does."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per probe
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()


def run_pass(saga: OrderSaga, beat: Callable[[], None] = lambda: None) -> dict[str, int]:
    """Claim and resolve one batch of unfinished orders; counts of what was done. `beat` after each order."""
    settings = saga.settings
    saga.failpoints.hit("worker_pass")
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
                extra={"fields": {"order_id": order.order_id, "reason": str(exc)}},
            )
        counts[action] = counts.get(action, 0) + 1
        metrics.worker_action(action)
        if action not in ("deferred", "skipped"):
            metrics.saga_outcome("recovered")
        log.info(
            "recovered order",
            extra={"fields": {"order_id": order.order_id, "from": order.status.value, "action": action}},
        )
        beat()
    return counts


def _resolve(saga: OrderSaga, order: Order) -> str:
    if order.status == OrderStatus.PENDING:
        return saga.resolve_pending(order)
    if order.status == OrderStatus.FAILING:
        return "failed" if saga.finish_failing(order) else "deferred"
    if order.status in (OrderStatus.CANCELLING, OrderStatus.FULFILLING):
        done = saga.finish(order)
        return "deferred" if done is None else done.status.value
    return "skipped"


def run_forever(saga: OrderSaga) -> int:
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("worker stopping", extra={"fields": {"signal": signum}})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings = saga.settings
    heartbeat = Heartbeat(settings.worker_heartbeat_interval())
    if settings.worker_metrics_port:
        from service_common.storage import schema_checks

        # The worker is its own Deployment: probes and the scrape target on its own port.
        serve_probes(
            probe_app(heartbeat, schema_checks(saga.engine, MIGRATIONS)), settings.host, settings.worker_metrics_port
        )
    log.info(
        "worker started",
        extra={"fields": {"grace_seconds": settings.recovery_grace_seconds, "heartbeat_interval": heartbeat.interval}},
    )
    published = PublishedHeartbeat(heartbeat, saga.engine)
    retention_due = time.monotonic()
    relay = None
    if settings.events_broker_url:
        from order_service.relay import Relay

        # The outbox's relay to the broker: a thread of its own; one worker's relay publishes at a time.
        relay = Relay(saga.engine, settings, saga.failpoints).start(stop)
    while not stop.is_set():
        published.beat()
        try:
            run_pass(saga, published.beat)
            if time.monotonic() >= retention_due:
                retention_due = time.monotonic() + settings.retention_interval_seconds
                retention_pass(saga)
        except Exception:  # a database outage must not end the worker; it retries next pass
            log.exception("worker pass failed")
        stop.wait(settings.worker_interval_seconds)
    if relay is not None:  # it marks what it published and gives up its lease
        relay.join(timeout=settings.events_publish_timeout * 2 + 5)
    return 0


def retention_pass(saga: OrderSaga) -> retention.Pruned:
    pruned = retention.run_retention(saga.engine, saga.inventory, saga.settings)
    if pruned != retention.Pruned():
        log.info("retention", extra={"fields": dataclasses.asdict(pruned)})
    return pruned
