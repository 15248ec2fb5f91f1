"""What the benchmark runs against: one replica of each service (`python -m <service> serve`, SQLite or
PostgreSQL), the 3+3 topology behind HAProxy (local.cluster.Cluster, PostgreSQL), the hello-world
ceiling (bench/hello.py), and, when given a checkout of it, the seed this project grew from (its two
`app.py` run as its README says). Every process is started here and stopped by its own id."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bench.load import PgTarget
from local.processes import (
    ServiceProcess,
    create_database,
    drop_database,
    free_port,
    is_ready,
    migrate,
    wait_or_kill,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")

HOT = "BENCH-HOT"
SPREAD_PREFIX = "BENCH-"
SPREAD_COUNT = 100
STOCK = 1_000_000_000  # the largest restock inventory accepts; a run takes far less


# --- PostgreSQL: the bench's own databases -------------------------------------------------------------------


class PgServer:
    """A PostgreSQL server given by URL (with or without a database name); the bench creates and drops only
    the databases named with its own prefix."""

    def __init__(self, url: str) -> None:
        base = url.rstrip("/")
        self.server = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
        parsed = sa.engine.make_url(self.server)
        host = parsed.host or "127.0.0.1"
        if host not in LOOPBACK and not host.startswith("127."):
            raise SystemExit(f"refusing to benchmark against {host}: only loopback targets")
        self.target = PgTarget(host, parsed.port or 5432, parsed.username or "postgres", parsed.password, "postgres")

    def url(self, database: str) -> str:
        return f"{self.server}/{database}"

    def recreate(self, database: str) -> str:
        self.drop(database)
        return create_database(self.server, database)

    def drop(self, database: str) -> None:
        drop_database(self.server, database)

    def max_clients(self) -> int:
        """How many clients pgbench may open: at most 64, and what the server's max_connections leaves over the
        sessions open now, less 20 (the services the bench starts next, and a shared server's other users)."""
        import psycopg

        with psycopg.connect(self.target.conninfo(), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT current_setting('max_connections')::int - (SELECT count(*) FROM pg_stat_activity)"
            ).fetchone()
        return max(1, min(64, int(row[0]) - 20)) if row else 32

    def run_script(self, database: str, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.target.conninfo(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)
            conn.execute("VACUUM ANALYZE")


# --- processes (local.processes) -----------------------------------------------------------------------------


def _server(
    name: str, module: str, env: dict[str, str], log: Path, port: int, command: str | None = "serve"
) -> ServiceProcess:
    """A server in a session of its own, so that stopping it reaches every process it started."""
    return ServiceProcess(module, command, env, log, port, name=name, new_session=True)


def _migrate(*services: tuple[str, dict[str, str]]) -> None:
    """`python -m <service> migrate` for each, at the same time (each service has its own database)."""
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        list(pool.map(lambda service: migrate(*service), services))


def _stop(servers: list[ServiceProcess]) -> None:
    """SIGINT to each (the server: quick shutdown, workers included), then wait for each."""
    for server in servers:
        server.signal(signal.SIGINT)
    for server in servers:
        server.stop(signal.SIGINT, timeout=15)


def service_env(settings: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment a service runs with: ours, less any database or fail-point settings, plus `settings`
    (tokens, log level, workers, threads) and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "FAILPOINTS"))}
    env.update(HOST="127.0.0.1", DRAIN_SECONDS="0", GRACEFUL_TIMEOUT="5", PYTHONUNBUFFERED="1")
    env.update(settings)
    env.update(extra)
    return env


class Single:
    """One replica of each service (each a server with WEB_CONCURRENCY workers), on SQLite files
    or on the bench's own PostgreSQL databases."""

    topology = "single"
    hot = HOT
    read_products = (SPREAD_PREFIX, SPREAD_COUNT)

    def __init__(self, engine: str, workdir: Path, settings: dict[str, str], pg: PgServer | None, prefix: str):
        self.engine, self.workdir, self.settings, self.pg, self.prefix = engine, workdir, settings, pg, prefix
        self.inventory: ServiceProcess | None = None
        self.order: ServiceProcess | None = None
        self.databases: list[str] = []
        self.owns_databases = True
        workdir.mkdir(parents=True, exist_ok=True)
        if engine == "sqlite":
            data = workdir / "sqlite"
            data.mkdir(parents=True, exist_ok=True)
            for f in data.glob("*.db*"):
                f.unlink()
            self.inventory_db, self.order_db = f"sqlite:///{data / 'inventory.db'}", f"sqlite:///{data / 'orders.db'}"
        else:
            assert pg is not None
            self.databases = [f"{prefix}_inventory", f"{prefix}_orders"]
            self.inventory_db, self.order_db = (pg.recreate(d) for d in self.databases)

    def twin(self, workdir: Path) -> Single:
        """Another replica of each service on the same databases (its own ports; its own log level at start)."""
        other = copy.copy(self)
        other.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        other.inventory = other.order = None
        other.owns_databases = False
        return other

    def start(self, log_level: str) -> None:
        inv_port, ord_port = free_port(), free_port()
        settings = {**self.settings, "LOG_LEVEL": log_level}
        inv_env = service_env(
            settings, DATABASE_URL=self.inventory_db, PORT=str(inv_port), SCRATCH_DIR=str(self.workdir / "inv")
        )
        ord_env = service_env(
            settings,
            DATABASE_URL=self.order_db,
            PORT=str(ord_port),
            INVENTORY_URL=f"http://127.0.0.1:{inv_port}",
            SCRATCH_DIR=str(self.workdir / "ord"),
        )
        _migrate(("inventory_service", inv_env), ("order_service", ord_env))
        log = self.workdir
        self.inventory = _server("inventory", "inventory_service", inv_env, log / "inventory.log", inv_port)
        self.order = _server("order", "order_service", ord_env, log / "order.log", ord_port)
        self.inventory.start()
        self.order.start()
        self.inventory.wait_ready(timeout=90)
        self.order.wait_ready(timeout=90)

    def stop(self) -> None:
        _stop([s for s in (self.order, self.inventory) if s is not None])

    def drop(self) -> None:
        if self.pg and self.owns_databases:
            for d in self.databases:
                self.pg.drop(d)

    @property
    def order_url(self) -> str:
        assert self.order is not None
        return self.order.url

    @property
    def inventory_url(self) -> str:
        assert self.inventory is not None
        return self.inventory.url

    def cpu_groups(self) -> dict[str, list[int]]:
        assert self.order is not None and self.inventory is not None
        return {"order": [self.order.pid], "inventory": [self.inventory.pid]}

    def masters(self) -> dict[str, int]:
        """The server main process of each service, for a profiler (its workers are its children)."""
        assert self.order is not None and self.inventory is not None
        return {"order": self.order.pid, "inventory": self.inventory.pid}


class Cluster3:
    """The 3+3 topology of `make cluster` (local.cluster.Cluster): 3 replicas of each service and 3 recovery
    workers on PostgreSQL, behind HAProxy, on free ports."""

    topology = "3+3"
    engine = "postgresql"
    hot = HOT
    read_products = (SPREAD_PREFIX, SPREAD_COUNT)

    def __init__(self, workdir: Path, settings: dict[str, str], pg: PgServer, prefix: str, replicas: int = 3):
        self.workdir, self.settings, self.pg, self.prefix, self.replicas = workdir, settings, pg, prefix, replicas
        self.databases = [f"{prefix}_inventory", f"{prefix}_orders"]
        for d in self.databases:
            pg.drop(d)  # Cluster.start creates them afresh
        self.cluster: Any = None

    def start(self, log_level: str) -> None:
        from local.cluster import Cluster

        self.cluster = Cluster(
            pg_url=self.pg.server,
            workdir=self.workdir / "cluster",
            replicas=self.replicas,
            order_port=free_port(),
            inventory_port=free_port(),
            database_prefix=self.prefix,
            extra_env={**self.settings, "LOG_LEVEL": log_level, "DRAIN_SECONDS": "0", "GRACEFUL_TIMEOUT": "5"},
            # As `make cluster`: the workers' relay publishes the order events to a broker (BENCH_RELAY=off: not).
            with_broker=os.environ.get("BENCH_RELAY", "on") != "off",
        )
        self.cluster.start()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()

    def drop(self) -> None:
        for d in self.databases:
            self.pg.drop(d)

    @property
    def order_url(self) -> str:
        return str(self.cluster.order_url)

    @property
    def inventory_url(self) -> str:
        return str(self.cluster.inventory_url)

    def cpu_groups(self) -> dict[str, list[int]]:
        c = self.cluster
        return {
            "order": [r.proc.pid for r in c.order if r.proc],
            "inventory": [r.proc.pid for r in c.inventory if r.proc],
            "recovery_workers": [r.proc.pid for r in c.workers if r.proc],
            "haproxy": [c.haproxy.pid] if c.haproxy else [],
            "broker": [c.broker.proc.pid] if c.broker and c.broker.proc else [],
        }

    def masters(self) -> dict[str, int]:
        c = self.cluster
        return {"order": c.order[0].proc.pid, "inventory": c.inventory[0].proc.pid}


class Seed:
    """The seed: a checkout of the teaching demo this project grew from (`order-service/app.py` and
    `inventory-service/app.py`, Flask's own server, dicts in memory), run as its README and Dockerfiles do
    (`python app.py`, PORT and INVENTORY_SERVICE_URL from the environment), by `python` (a Python with
    the seed's requirements installed). Its products are P001 to P004; P001 is restocked through its own
    API so that a run cannot sell it out (a sold-out order costs it one hop, not two)."""

    topology = "seed"
    engine = "memory"
    hot = "P001"
    read_products = ("P", 1)  # GET /inventory/P001
    databases: list[str] = []

    def __init__(self, checkout: Path, python: str, workdir: Path) -> None:
        self.checkout, self.python, self.workdir = checkout, python, workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {"inventory": free_port(), "order": free_port()}
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, log_level: str) -> None:
        inventory = f"http://127.0.0.1:{self.ports['inventory']}"
        for service in ("inventory", "order"):
            env = {"PATH": os.environ.get("PATH", ""), "PORT": str(self.ports[service])}
            if service == "order":
                env["INVENTORY_SERVICE_URL"] = inventory
            app = self.checkout / f"{service}-service" / "app.py"
            with open(self.workdir / f"seed-{service}.log", "ab") as log:
                self.procs[service] = subprocess.Popen(
                    [self.python, str(app)],
                    env=env,
                    cwd=app.parent,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for service, proc in self.procs.items():
            url = f"http://127.0.0.1:{self.ports[service]}"

            def ready(proc: subprocess.Popen[bytes] = proc, url: str = url, service: str = service) -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"the seed's {service} exited with {proc.returncode}; see {self.workdir}")
                return is_ready(url, "/health")

            wait_until(ready, 60, f"the seed's {service} service")
        r = requests.post(f"{inventory}/inventory/{self.hot}/restock", json={"quantity": STOCK}, timeout=30)
        r.raise_for_status()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            wait_or_kill(proc, 15)

    def drop(self) -> None:
        pass

    @property
    def order_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['order']}"

    @property
    def inventory_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inventory']}"

    def cpu_groups(self) -> dict[str, list[int]]:
        return {service: [proc.pid] for service, proc in self.procs.items()}

    def masters(self) -> dict[str, int]:
        return {service: proc.pid for service, proc in self.procs.items()}


class Hello:
    """The hello-world ceiling (bench/hello.py) on the same server settings as the services."""

    def __init__(self, workdir: Path, settings: dict[str, str]) -> None:
        port = free_port()
        env = service_env({**settings, "LOG_LEVEL": "WARNING"}, PORT=str(port), SCRATCH_DIR=str(workdir / "hello"))
        self.server = _server("hello", "bench.hello", env, workdir / "hello.log", port, command=None)
        self.server.ready_path = "/"

    def start(self) -> None:
        self.server.start()
        self.server.wait_ready(timeout=90)

    def stop(self) -> None:
        _stop([self.server])


# --- data ----------------------------------------------------------------------------------------------------


def seed(inventory_url: str, admin_token: str) -> None:
    """The hot product and the spread ones, with stock that a run cannot exhaust (created, or restocked)."""
    headers = {"Authorization": f"Bearer {admin_token}"}

    def one(product_id: str) -> None:
        body = {"product_id": product_id, "name": f"bench {product_id}", "price": 9.99, "quantity": STOCK}
        r = requests.post(f"{inventory_url}/inventory", json=body, headers=headers, timeout=30)
        if r.status_code == 409:
            url = f"{inventory_url}/inventory/{product_id}/restock"
            r = requests.post(url, json={"quantity": STOCK}, headers=headers, timeout=30)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"seeding {product_id}: {r.status_code} {r.text[:300]}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [HOT] + [f"{SPREAD_PREFIX}{i:03d}" for i in range(1, SPREAD_COUNT + 1)]))


def newest_order(order_url: str, minimum: int = 20) -> int:
    """The highest order number that exists (orders placed first if there are fewer than `minimum`)."""

    def newest() -> int:
        r = requests.get(f"{order_url}/orders", params={"limit": 1}, timeout=30)
        r.raise_for_status()
        orders = r.json()["orders"]
        return int(orders[0]["order_id"].removeprefix("ORD")) if orders else 0

    number = newest()
    if number < minimum:
        for i in range(minimum):
            body = {"product_id": f"{SPREAD_PREFIX}{i % SPREAD_COUNT + 1:03d}", "quantity": 1, "customer_id": "bench"}
            requests.post(f"{order_url}/orders", json=body, timeout=30).raise_for_status()
        number = newest()
    return number


def available(inventory_url: str, product_id: str, settle: bool = False) -> int:
    """A product's available units; with `settle`, once two reads a second apart agree (requests a load
    generator gave up on at its end may still be committing)."""
    import time

    def read() -> int:
        r = requests.get(f"{inventory_url}/inventory/{product_id}", timeout=30)
        r.raise_for_status()
        return int(r.json()["available_quantity"])

    now = read()
    while settle:
        time.sleep(1)
        now, before = read(), now
        settle = now != before
    return now


def reserve_batches(url: str, histogram: str = "inventory_reserves_per_transaction") -> dict[str, float]:
    """A batch histogram's cumulative buckets (le -> count) and sum, from the service's /metrics: inventory's
    reserves per transaction, or (the order service's) inventory_reserves_per_call."""
    r = requests.get(f"{url}/metrics", timeout=30)
    r.raise_for_status()
    found: dict[str, float] = {}
    for line in r.text.splitlines():
        if line.startswith(f"{histogram}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            found[le] = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{histogram}_sum "):
            found["sum"] = float(line.rsplit(" ", 1)[1])
    return found
