"""The recovery worker's own probes (WORKER_METRICS_PORT), what its Deployment's kubelet watches: liveness is
the heartbeat of its loop, not merely an HTTP server answering; readiness adds the database and the schema."""

from __future__ import annotations

from pathlib import Path

import requests

from local.processes import free_port, migrate, wait_until
from tests.topology import Process, base_env

# Inventory calls that fail fast (nothing listens there), so the heartbeat interval is short:
# max(WORKER_INTERVAL_SECONDS, worst inventory call 0.5 s + 2 s database margin) = 2.5 s, stale after 7.5 s.
FAST = {
    "INVENTORY_CONNECT_TIMEOUT": "0.2",
    "INVENTORY_READ_TIMEOUT": "0.3",
    "INVENTORY_RETRIES": "0",
    "RECOVERY_GRACE_SECONDS": "5",
    "WORKER_INTERVAL_SECONDS": "0.5",
}


def _worker(tmp_path: Path, name: str, **extra: str) -> Process:
    port = free_port()
    env = base_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'orders.db'}",
        PORT=str(free_port()),
        INVENTORY_URL=f"http://127.0.0.1:{free_port()}",
        WORKER_METRICS_PORT=str(port),
        **FAST,
        **extra,
    )
    return Process("order_service", "worker", env, tmp_path / f"{name}.log", port)


def _get(worker: Process, path: str) -> requests.Response | None:
    assert worker.alive(), worker.log.read_text()[-2000:]
    try:
        return requests.get(f"{worker.url}{path}", timeout=2)
    except requests.RequestException:
        return None


def _status(worker: Process, path: str) -> int | None:
    response = _get(worker, path)
    return None if response is None else response.status_code


def test_worker_liveness_fails_when_its_loop_hangs_though_its_http_still_answers(tmp_path: Path) -> None:
    migrate("order_service", base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'orders.db'}", PORT="0"))
    hung = _worker(tmp_path, "hung", FAILPOINTS="worker_pass=hang").start()
    healthy = _worker(tmp_path, "healthy").start()
    try:
        wait_until(lambda: _status(hung, "/health/live") == 503, timeout=60, what="the hung worker's liveness to fail")
        live = _get(hung, "/health/live")
        assert live is not None and live.json()["status"] == "stale", live
        assert live.json()["heartbeat_age_seconds"] > live.json()["stale_after_seconds"] == 7.5
        ready = _get(hung, "/health/ready")
        assert ready is not None and ready.status_code == 503 and ready.json()["checks"]["heartbeat"] == "stale"
        # The process still answers HTTP: what a port check or an always-200 /health would have passed.
        metrics = _get(hung, "/metrics")
        assert metrics is not None and metrics.status_code == 200 and "# TYPE" in metrics.text
        assert "failpoint reached: hanging" in hung.log.read_text()
        # The same worker without the fail point keeps beating: alive and ready.
        wait_until(lambda: _status(healthy, "/health/ready") == 200, what="the healthy worker to be ready")
        assert _status(healthy, "/health/live") == 200
    finally:
        hung.kill()
        healthy.kill()


def test_worker_is_ready_once_its_schema_is_at_head_and_answers_errors_as_json(tmp_path: Path) -> None:
    worker = _worker(tmp_path, "worker").start()
    try:
        # Alive (its loop runs, each pass failing on the missing tables) but not ready: no schema yet.
        wait_until(lambda: _status(worker, "/health/live") == 200, what="the worker's liveness")
        ready = _get(worker, "/health/ready")
        assert ready is not None and ready.status_code == 503, ready
        assert ready.json()["checks"]["schema"].startswith("at nothing"), ready.json()
        migrate("order_service", worker.env)
        wait_until(lambda: _status(worker, "/health/ready") == 200, what="the worker to be ready")
        missing = _get(worker, "/nothing-here")
        assert missing is not None and missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert worker.stop() == 0  # SIGTERM: it finishes its pass and exits
    finally:
        worker.kill()
