"""Prometheus metrics, correct across all server workers of a process (prometheus-client's
multiprocess mode: each worker writes its values to files in a scratch directory, wiped when the
server starts). A worker that died is folded out of the live gauges at the next scrape, so its gauges
disappear while its counters and histograms stay (no counter ever goes down).

Each worker also takes a slot (0, 1, … up to the worker count) for as long as it lives, held as a lock
on a file, and counts its requests under that label: the load balance across workers shows in
`http_worker_requests_total{worker="0"}`, … whatever the pids, and a replacement takes its
predecessor's slot.

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

from flask import Flask, Request, Response, request

from service_common.front import asks_to_run_again
from service_common.logs import ServiceRequest

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess_dir(path: Path) -> None:
    """Start every server with an empty metrics directory (old workers' files would count twice)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[_ENV] = str(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fold_dead_workers(directory: Path) -> None:
    """Mark every process whose live-gauge files remain but which is gone (what gunicorn's child_exit
    hook did, done at scrape time so it does not depend on the server's supervisor)."""
    from prometheus_client import multiprocess

    pids = {f.stem.rsplit("_", 1)[1] for f in directory.glob("gauge_live*_*.db")}
    for pid in {int(p) for p in pids if p.isdigit()}:
        if not _pid_alive(pid):
            multiprocess.mark_process_dead(pid, str(directory))


def worker_slot(directory: Path, slots: int) -> str:
    """The lowest free slot below `slots` (the worker count), held until this process exits; "extra" if
    every slot is taken (a replacement started before its predecessor's lock was released)."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    for slot in range(slots):
        fd = os.open(directory / f"worker-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held_slots.append(fd)  # kept open: the lock lives as long as the process
        return str(slot)
    return "extra"


_held_slots: list[int] = []


def _scrape(collectors: list[Any]) -> bytes:
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if os.environ.get(_ENV):
        fold_dead_workers(Path(os.environ[_ENV]))
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
def _http_metrics() -> tuple[Any, Any, Any, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return (
        Counter("http_requests_total", "HTTP requests answered.", ["service", "route", "method", "status"]),
        Counter("http_worker_requests_total", "HTTP requests answered, by server worker slot.", ["service", "worker"]),
        # liveall: one sample per live worker process (with its pid); a dead worker's sample disappears.
        Gauge(
            "http_server_worker", "1 for each live server worker.", ["service", "worker"], multiprocess_mode="liveall"
        ),
        Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["service", "route", "method"],
            buckets=_LATENCY_BUCKETS,
        ),
    )


def register_metrics(app: Flask, service: str, collectors: Iterable[Any] = (), worker: str = "0") -> None:
    """Count every request by route template, method and status; time it; serve GET /metrics.

    `collectors` run at scrape time (stock read from the database), in the scrape's registry only. A request
    is timed from its start time, taken when Flask made it (ServiceRequest).
    """
    from prometheus_client import CONTENT_TYPE_LATEST

    requests_total, worker_requests, live_worker, latency = _http_metrics()
    per_worker = worker_requests.labels(service, worker)
    live_worker.labels(service, worker).set(1)
    scraped = list(collectors)
    # Each request's labelled children, found once per (route, method, status): `labels()` validates and
    # looks them up under a lock on every call. Routes are templates and methods and statuses few, so this
    # stays small; a thread that races another here only creates the same child twice.
    children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
    app.request_class = ServiceRequest

    @app.after_request
    def _record(response: Response) -> Response:
        # One look-up of the request behind Flask's proxy for all that follows.
        served: Request = request._get_current_object()  # type: ignore[attr-defined]  # werkzeug's LocalProxy
        rule = served.url_rule
        route = rule.rule if rule is not None else "unmatched"
        # A run the front repeats is no answer (front.py): one request, counted once, by its last run.
        if route != "/metrics" and not asks_to_run_again(response.headers):
            key = (route, served.method, response.status_code)
            found = children.get(key)
            if found is None:
                found = children[key] = (
                    requests_total.labels(service, route, key[1], str(key[2])),
                    latency.labels(service, route, key[1]),
                )
            per_worker.inc()
            found[0].inc()
            started = getattr(served, "started", None)
            if started is not None:
                found[1].observe(time.perf_counter() - started)
        return response

    def metrics() -> Response:
        return Response(_scrape(scraped), mimetype=CONTENT_TYPE_LATEST)

    # A plain Flask rule: Prometheus text for scrapers, not part of the OpenAPI document.
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
