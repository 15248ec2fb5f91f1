"""Measure what one replica of each service uses, for the requests and limits in k8s/*-service.yaml.

Starts inventory + order (+ the recovery worker) as the tests do (`python -m <service> serve`, granian
WEB_CONCURRENCY=2, THREADS=8, the Deployments' settings) on PostgreSQL when TEST_DATABASE_URL is
set (else SQLite), then for each phase samples every process of each replica (master + workers) twice a
second: PSS memory (/proc/PID/smaps_rollup) and CPU (utime+stime from /proc/PID/stat).

Phases: idle after start; `wrk -c16` on GET /inventory/P001 (inventory alone); `wrk -c16` on POST /orders
(order, which calls inventory twice per order). Loopback only; each phase is bounded by DURATION.
Usage: .venv/bin/python bench/resources.py   (env: DURATION=20, TEST_DATABASE_URL=postgresql://…)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.processes import cpu_seconds, descendants  # noqa: E402
from tests.topology import ADMIN_TOKEN, Process, stack  # noqa: E402

DURATION = int(os.environ.get("DURATION", "20"))
POST_ORDER = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"product_id": "%s", "quantity": 1, "customer_id": "bench"}'
"""


def tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Sampler:
    """Peak PSS and mean CPU (cores) of each named process tree while it runs."""

    def __init__(self, procs: dict[str, Process]) -> None:
        self.procs = procs
        self.peak = dict.fromkeys(procs, 0.0)
        self.cpu0 = {n: cpu_seconds(tree(p.proc.pid)) for n, p in procs.items() if p.proc}
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for name, p in self.procs.items():
                if p.proc:
                    self.peak[name] = max(self.peak[name], pss_mib(tree(p.proc.pid)))
            self.stop.wait(0.5)

    def finish(self) -> dict[str, tuple[float, float]]:
        self.stop.set()
        self.thread.join()
        wall = time.monotonic() - self.t0
        return {
            n: (self.peak[n], (cpu_seconds(tree(p.proc.pid)) - self.cpu0[n]) / wall)
            for n, p in self.procs.items()
            if p.proc
        }


def wrk(url: str, script: Path | None = None) -> str:
    cmd = ["wrk", "-t2", "-c16", f"-d{DURATION}s", url]
    if script:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60).stdout
    return next((line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")), "?")


def main() -> int:
    kind = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    env = {"DB_POOL_SIZE": "5", "LOG_LEVEL": "INFO"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        stack(Path(tmp), kind, inventory_env=env, order_env=env, with_worker=True) as s,
    ):
        import requests

        assert s.worker is not None
        procs = {"inventory": s.inventory, "order": s.order, "worker": s.worker}
        product = f"BENCH{int(time.time())}"
        r = requests.post(
            f"{s.inventory.url}/inventory",
            json={"product_id": product, "name": "Bench", "price": 1.0, "quantity": 1_000_000_000},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        r.raise_for_status()
        script = Path(tmp) / "post.lua"
        script.write_text(POST_ORDER % product)
        print(f"# {kind}, WEB_CONCURRENCY=2 THREADS=8, nproc={os.cpu_count()}, wrk -t2 -c16 -d{DURATION}s")
        print("| phase | req/s | inventory: peak PSS MiB, CPU cores | order | worker |")
        print("|---|---:|---:|---:|---:|")
        phases = [
            ("idle (after one request each)", None),
            ("GET /inventory/P001", (f"{s.inventory.url}/inventory/P001", None)),
            ("POST /orders", (f"{s.order.url}/orders", script)),
        ]
        for name, load in phases:
            sampler = Sampler(procs)
            if load is None:
                requests.get(f"{s.inventory.url}/inventory/P001", timeout=5)
                requests.get(f"{s.order.url}/orders", timeout=5)
                time.sleep(min(DURATION, 5))
                rps = "-"
            else:
                rps = wrk(*load)
            res = sampler.finish()
            cells = " | ".join(f"{res[n][0]:.0f}, {res[n][1]:.2f}" for n in procs)
            print(f"| {name} | {rps} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
