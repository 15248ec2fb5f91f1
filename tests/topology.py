"""The process tests' stack: each service started as it runs in production (`python -m <service> serve`,
through local.processes), on free loopback ports, against a fresh database (SQLite files in a temp dir,
or a PostgreSQL database of its own). Used by conftest.py fixtures and by tests that kill and restart."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from local.processes import (
    ServiceProcess,
    create_database,
    drop_database,
    free_port,
    listeners,
    migrate,
    server_url,
    wait_until,
)

SERVICE_TOKEN = "test-service-token"
ADMIN_TOKEN = "test-admin-token"


class Database:
    """One database for one service: a SQLite file, or a PostgreSQL database created for the test."""

    def __init__(self, kind: str, workdir: Path, name: str) -> None:
        self.kind = kind
        self._server: str | None = None
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / (name + '.db')}"
        else:
            self._server = server_url(os.environ["TEST_DATABASE_URL"])
            self.dbname = f"t_{name}_{uuid.uuid4().hex[:10]}"
            self.url = create_database(self._server, self.dbname)

    def engine(self) -> sa.Engine:
        from service_common.storage import create_db_engine

        return create_db_engine(self.url)

    def drop(self) -> None:
        if self._server:
            drop_database(self._server, self.dbname)


class Process(ServiceProcess):
    """A service process as the tests use it: a server is waited for until ready unless told otherwise."""

    def start(self, wait: bool = True, timeout: float = 30) -> Process:
        serve = wait and self.command == "serve"
        super().start(wait=serve, timeout=timeout)
        if serve:
            # Ready, and every worker listening: a worker binds once its app is built, so the first answer
            # may come while another worker is still starting.
            workers = int(self.env.get("WEB_CONCURRENCY", "2"))
            assert self.port is not None
            port = self.port
            wait_until(lambda: listeners(port) >= workers, timeout, f"{self.module}'s {workers} workers on {port}")
        return self

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)


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
