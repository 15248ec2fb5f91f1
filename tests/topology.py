"""Real processes for integration tests: each service started with its production server (`python -m
<service> serve`), on free loopback ports, against a fresh database (SQLite files in a temp dir, or a
PostgreSQL database of its own). Used by conftest.py fixtures and by tests that kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from local.cluster import free_port, spawn, wait_or_kill

ROOT = Path(__file__).resolve().parent.parent
SERVICE_TOKEN = "test-service-token"
ADMIN_TOKEN = "test-admin-token"


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def listeners(port: int) -> int:
    """Sockets listening on `port` (each server worker has its own, with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


def is_ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/health/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Database:
    """One database for one service: a SQLite file, or a PostgreSQL database created for the test."""

    def __init__(self, kind: str, workdir: Path, name: str) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / (name + '.db')}"
            self._admin_url = None
        else:
            base = os.environ["TEST_DATABASE_URL"].rstrip("/")
            server = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
            self.dbname = f"t_{name}_{uuid.uuid4().hex[:10]}"
            self._admin_url = f"{server}/postgres"
            self.url = f"{server}/{self.dbname}"
            self._admin(f'CREATE DATABASE "{self.dbname}"')

    def _admin(self, statement: str) -> None:
        from service_common.storage import normalise_url

        engine = sa.create_engine(normalise_url(self._admin_url or ""), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def engine(self) -> sa.Engine:
        from service_common.storage import create_db_engine

        return create_db_engine(self.url)

    def drop(self) -> None:
        if self._admin_url:
            self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


@dataclass
class Process:
    """One service process (a replica or a worker) that a test can kill and start again."""

    module: str
    command: str
    env: dict[str, str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Process:
        self.proc = spawn(self.module, self.command, self.env, self.log)
        if wait and self.command == "serve":
            # Ready, and every worker listening: a worker binds once its app is built, so the first answer
            # may come while another worker is still starting.
            workers = int(self.env.get("WEB_CONCURRENCY", "2"))
            assert self.port is not None
            port = self.port
            wait_until(
                lambda: self.alive() and is_ready(self.url) and listeners(port) >= workers,
                what=f"{self.module} on {self.port} to be ready",
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        return wait_or_kill(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL the server and its worker processes: nothing gets to clean up."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # Freeze the master first. A running master replaces each worker it sees die, and a worker
        # forked after the list below was taken would survive the kill, still holding the port (and
        # answering, so a restart on that port could be "ready" before it even bound).
        with suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGSTOP)
        for pid in descendants(self.proc.pid):
            _kill(pid)
        _kill(self.proc.pid)
        self.proc.wait()

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for c in children for d in descendants(c)]


def migrate(module: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", module, "migrate"], env=env, check=True, capture_output=True)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "FAILPOINTS"))}
    env.update(
        HOST="127.0.0.1",
        SERVICE_TOKEN=SERVICE_TOKEN,
        ADMIN_TOKEN=ADMIN_TOKEN,
        WEB_CONCURRENCY="2",
        THREADS="8",
        DRAIN_SECONDS="0",
        GRACEFUL_TIMEOUT="5",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Stack:
    """Inventory + order service (+ optionally the recovery worker), one replica each."""

    workdir: Path
    kind: str
    inventory_db: Database
    order_db: Database
    inventory: Process = field(init=False)
    order: Process = field(init=False)
    worker: Process | None = field(init=False, default=None)

    def configure(self, inventory_env: dict[str, str] | None = None, order_env: dict[str, str] | None = None) -> None:
        inv_port, ord_port = free_port(), free_port()
        inv_env = base_env(DATABASE_URL=self.inventory_db.url, PORT=str(inv_port), **(inventory_env or {}))
        ord_env = base_env(
            DATABASE_URL=self.order_db.url,
            PORT=str(ord_port),
            INVENTORY_URL=f"http://127.0.0.1:{inv_port}",
            **(order_env or {}),
        )
        self.inventory = Process("inventory_service", "serve", inv_env, self.workdir / "inventory.log", inv_port)
        self.order = Process("order_service", "serve", ord_env, self.workdir / "order.log", ord_port)
        self.worker = Process("order_service", "worker", ord_env, self.workdir / "worker.log")

    def start(self, with_worker: bool = False) -> Stack:
        migrate("inventory_service", self.inventory.env)
        migrate("order_service", self.order.env)
        self.inventory.start()
        self.order.start()
        if with_worker and self.worker is not None:
            self.worker.start()
        return self

    def stop(self) -> None:
        for p in (self.worker, self.order, self.inventory):
            if p is not None:
                p.stop(signal.SIGINT, timeout=15)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log.name}\n{p.log.read_text()[-4000:]}"
            for p in (self.inventory, self.order, self.worker)
            if p is not None and p.log.exists()
        )


@contextmanager
def stack(
    workdir: Path,
    kind: str,
    *,
    inventory_env: dict[str, str] | None = None,
    order_env: dict[str, str] | None = None,
    with_worker: bool = False,
) -> Iterator[Stack]:
    inv_db = Database(kind, workdir, "inventory")
    ord_db = Database(kind, workdir, "orders")
    s = Stack(workdir, kind, inv_db, ord_db)
    s.configure(inventory_env, order_env)
    try:
        s.start(with_worker=with_worker)
        yield s
    finally:
        s.stop()
        inv_db.drop()
        ord_db.drop()
