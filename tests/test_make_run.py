"""`make run`'s launcher: migrates, starts both services and the worker on SQLite files, keeps tokens
private, and stops everything cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from local.processes import ROOT, descendants, free_port, is_ready, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_run_serves_both_services_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    order_port, inventory_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("SERVICE_TOKEN", "ADMIN_TOKEN", "DATABASE_URL")},
        "DATA_DIR": str(tmp_path / "data"),
        "ORDER_PORT": str(order_port),
        "INVENTORY_PORT": str(inventory_port),
        "LOG_LEVEL": "WARNING",
    }
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen([sys.executable, str(ROOT / "local" / "run.py")], env=env, stdout=log, stderr=log)
    try:
        order, inventory = f"http://127.0.0.1:{order_port}", f"http://127.0.0.1:{inventory_port}"
        wait_until(lambda: is_ready(order) and is_ready(inventory), timeout=60, what="make run's services")
        r = requests.post(
            f"{order}/orders", json={"product_id": "P001", "quantity": 2, "customer_id": "C1"}, timeout=10
        )
        assert r.status_code == 201, r.text
        assert requests.get(f"{inventory}/inventory/P001", timeout=10).json()["reserved_quantity"] == 2

        tokens = tmp_path / "data" / "tokens.env"
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
        assert {line.split("=")[0] for line in tokens.read_text().splitlines()} == {"SERVICE_TOKEN", "ADMIN_TOKEN"}
        assert (tmp_path / "data" / "orders.db").exists() and (tmp_path / "data" / "inventory.db").exists()

        children = descendants(proc.pid)
        assert len(children) >= 3  # inventory, order, worker (and the servers' worker processes)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        assert not is_ready(order) and not is_ready(inventory)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
