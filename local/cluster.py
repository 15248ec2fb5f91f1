"""`make cluster`: N replicas of each service (and N order workers) as separate processes on their own
ports, on PostgreSQL (one database per service), behind HAProxy on the seed's ports, standing in for
the Kubernetes Services. The order replicas reach inventory through HAProxy, as pods reach a Service.
A NATS JetStream server of its own (the event broker, on a free port) takes the order events that the
workers' relay publishes (one relay active at a time, under its lease).

Also used by the tests, which start it on free ports and kill, drain and restart its replicas. Processes
are started and stopped by local.processes; this module holds only what is cluster-specific.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.broker import NatsServer
from local.processes import ServiceProcess, create_database, free_port, migrate, wait_until
from local.run import load_tokens

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Cluster:
    """Replicas of both services and HAProxy in front; call start(), then stop()."""

    pg_url: str
    workdir: Path
    replicas: int = 3
    order_port: int = 30000
    inventory_port: int = 5001
    database_prefix: str = "shop"
    extra_env: dict[str, str] = field(default_factory=dict)
    with_broker: bool = True  # the event broker and the workers' relay (off: the outbox is only the feed)
    inventory: list[ServiceProcess] = field(default_factory=list)
    order: list[ServiceProcess] = field(default_factory=list)
    workers: list[ServiceProcess] = field(default_factory=list)
    haproxy: subprocess.Popen[bytes] | None = None
    broker: NatsServer | None = None

    @property
    def order_url(self) -> str:
        return f"http://127.0.0.1:{self.order_port}"

    @property
    def inventory_url(self) -> str:
        return f"http://127.0.0.1:{self.inventory_port}"

    @property
    def stats_socket(self) -> Path:
        return self.workdir / "haproxy.sock"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        inv_db = create_database(self.pg_url, f"{self.database_prefix}_inventory", if_missing=True)
        ord_db = create_database(self.pg_url, f"{self.database_prefix}_orders", if_missing=True)
        common = {
            **os.environ,
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": "2",
            "THREADS": "8",
            "DB_POOL_SIZE": "5",
            "DRAIN_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        inv_env = {**common, "DATABASE_URL": inv_db}
        ord_env = {**common, "DATABASE_URL": ord_db, "INVENTORY_URL": self.inventory_url}
        if self.with_broker:
            self.broker = NatsServer(self.workdir / "nats")
            self.broker.workdir.mkdir(parents=True, exist_ok=True)
            self.broker.start()
            ord_env["EVENTS_BROKER_URL"] = self.broker.url
        # Migrations once, before any replica starts (a Kubernetes Job in production).
        migrate("inventory_service", inv_env)
        migrate("order_service", ord_env)
        for i in range(1, self.replicas + 1):
            self.inventory.append(self._server(f"inventory{i}", "inventory_service", inv_env))
            self.order.append(self._server(f"order{i}", "order_service", ord_env))
            worker_env = {**ord_env, "DB_POOL_SIZE": "2"}
            log = self.workdir / f"worker{i}.log"
            self.workers.append(ServiceProcess("order_service", "worker", worker_env, log, name=f"worker{i}"))
        for replica in self.inventory + self.order + self.workers:
            replica.start()
        self._start_haproxy()
        self.wait_all_up()

    def _server(self, name: str, module: str, env: dict[str, str]) -> ServiceProcess:
        port = free_port()
        env = {**env, "PORT": str(port), "SCRATCH_DIR": str(self.workdir / f"scratch-{name}")}
        return ServiceProcess(module, "serve", env, self.workdir / f"{name}.log", port, name=name)

    def _start_haproxy(self) -> None:
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self))
        subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True)
        with open(self.workdir / "haproxy.log", "ab") as out:
            self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)

    # --- HAProxy's view ---------------------------------------------------------------------------------------

    def haproxy_stats(self) -> list[dict[str, str]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().strip().splitlines()
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]

    def server_state(self, name: str) -> str:
        for row in self.haproxy_stats():
            if row["svname"] == name:
                return row["status"]
        raise KeyError(name)

    def requests_by_server(self, backend: str) -> dict[str, int]:
        return {
            r["svname"]: int(r["stot"] or 0)
            for r in self.haproxy_stats()
            if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_all_up(self, timeout: float = 60) -> None:
        names = [r.name for r in self.inventory + self.order]
        wait_until(
            lambda: all(self.server_state(n) == "UP" for n in names),
            timeout,
            "all replicas UP in HAProxy",
            ignoring=(OSError, KeyError),
        )

    def stop(self) -> None:
        for replica in self.workers + self.order + self.inventory:
            replica.signal(signal.SIGTERM)
        for replica in self.workers + self.order + self.inventory:
            replica.wait(timeout=60)
        if self.haproxy and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=10)
        if self.broker is not None:
            self.broker.stop()


def haproxy_config(cluster: Cluster) -> str:
    def backend(name: str, replicas: list[ServiceProcess]) -> str:
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
        return f"""
backend {name}
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
    http-response set-header X-Served-By %s
{servers}
"""

    return f"""# Generated by local/cluster.py: HAProxy standing in for the two Kubernetes Services.
global
    maxconn 4096
    stats socket {cluster.stats_socket} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 30s
    timeout http-keep-alive 30s
    option http-keep-alive
    # Only a connection that never reached a server is tried again, on another one: a request that
    # may have been processed is never replayed.
    retries 3
    retry-on conn-failure
    option redispatch

frontend order
    bind 127.0.0.1:{cluster.order_port}
    default_backend order_service

frontend inventory
    bind 127.0.0.1:{cluster.inventory_port}
    default_backend inventory_service
{backend("order_service", cluster.order)}{backend("inventory_service", cluster.inventory)}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS", "3")))
    args = parser.parse_args()
    pg_url = os.environ.get("CLUSTER_PG_URL", "postgresql://postgres@127.0.0.1:5432")
    workdir = Path(tempfile.mkdtemp(prefix="cluster-"))
    cluster = Cluster(
        pg_url=pg_url,
        workdir=workdir,
        replicas=args.replicas,
        order_port=int(os.environ.get("ORDER_PORT", "30000")),
        inventory_port=int(os.environ.get("INVENTORY_PORT", "5001")),
        extra_env=load_tokens(),
    )
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        cluster.start()
        print(f"HAProxy: order {cluster.order_url}  inventory {cluster.inventory_url}  (logs in {workdir})")
        for r in cluster.inventory + cluster.order:
            print(f"  {r.name:<12} {r.url}  pid {r.proc.pid if r.proc else '?'}")
        for r in cluster.workers:
            print(f"  {r.name:<12} recovery worker  pid {r.proc.pid if r.proc else '?'}")
        if cluster.broker is not None:
            print(f"  {'nats':<12} {cluster.broker.url}  (events: python -m order_service events tail)")
        print("Ctrl-C stops everything.", flush=True)
        while not stopping:
            time.sleep(0.2)
    finally:
        cluster.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
