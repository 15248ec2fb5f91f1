"""Prometheus metrics, correct across all gunicorn workers of a process (prometheus-client's
multiprocess mode: each worker writes its values to files in a scratch directory, wiped when the
server starts, and a dead worker's files are marked by the master's child_exit hook).

PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported, so `serve` prepares it
first thing; without it (tests with Flask's test client, the worker process) the ordinary
single-process registry is used.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess_dir(path: Path) -> None:
    """Start every server with an empty metrics directory (old workers' files would count twice)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[_ENV] = str(path)


def mark_worker_dead(_server: Any, worker: Any) -> None:
    """gunicorn child_exit hook: fold a dead worker's gauges out of the live ones."""
    from prometheus_client import multiprocess

    if os.environ.get(_ENV):
        multiprocess.mark_process_dead(worker.pid)


def _scrape(collectors: list[Any]) -> bytes:
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if os.environ.get(_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = b""
    else:
        registry = CollectorRegistry()
        text = generate_latest(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    return text + generate_latest(registry)


@functools.cache
def _http_metrics() -> tuple[Any, Any]:
    from prometheus_client import Counter, Histogram

    return (
        Counter("http_requests_total", "HTTP requests answered.", ["service", "route", "method", "status"]),
        Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["service", "route", "method"],
            buckets=_LATENCY_BUCKETS,
        ),
    )


def register_metrics(app: Flask, service: str, collectors: Iterable[Any] = ()) -> None:
    """Count every request by route template, method and status; time it; serve GET /metrics.

    `collectors` run at scrape time (stock read from the database), in the scrape's registry only.
    """
    from prometheus_client import CONTENT_TYPE_LATEST

    requests_total, latency = _http_metrics()
    scraped = list(collectors)

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        if route != "/metrics":
            requests_total.labels(service, route, request.method, str(response.status_code)).inc()
            started = g.get("metrics_started")
            if started is not None:
                latency.labels(service, route, request.method).observe(time.perf_counter() - started)
        return response

    def metrics() -> Response:
        return Response(_scrape(scraped), mimetype=CONTENT_TYPE_LATEST)

    # A plain Flask rule: Prometheus text for scrapers, not part of the OpenAPI document.
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
