"""What the saga's fault-injection tests share: settings small enough that recovery happens within a test,
a stack whose recovery worker never carries a fail point, restarting a crashed process with its fail
points removed, and the checks every such test ends with (all orders final, audit clean, stock conserved).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from local.processes import migrate, wait_until
from tests.stack_client import Api
from tests.topology import Database, Process, Stack

# Recovery must wait longer than the worst reserve: the call out that it queues behind and then its own, each
# (0.25 + 1) x 2 attempts + 0.1 backoff = 2.6 s, plus the order service's 2 s database margin: the settings
# refuse anything up to 7.2 s.
GRACE = 8.0
SAGA_ENV = {
    "INVENTORY_CONNECT_TIMEOUT": "0.25",
    "INVENTORY_READ_TIMEOUT": "1",
    "INVENTORY_RETRIES": "1",
    "INVENTORY_BACKOFF_MAX": "0.1",
    "RECOVERY_GRACE_SECONDS": str(GRACE),
    "WORKER_INTERVAL_SECONDS": "0.5",
    "BREAKER_RESET_SECONDS": "1",
}
# A deferred order keeps its worker lease (2.6 x 2 + 5 s) before it is tried again; waits allow for one.
RECOVERY_TIMEOUT = GRACE + 25

FINAL = frozenset({"confirmed", "rejected", "failed", "cancelled", "fulfilled"})
UNFINISHED = ("pending", "failing", "cancelling", "fulfilling")
STATES = (*sorted(FINAL), *UNFINISHED)


def without_failpoints(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "FAILPOINTS"}


@contextmanager
def saga_stack(
    workdir: Path,
    kind: str,
    *,
    order_failpoints: str = "",
    inventory_failpoints: str = "",
    order_env: dict[str, str] | None = None,
    inventory_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Both services with SAGA_ENV (and the fail points given), and a recovery worker without any.

    The worker is a process of its own, as in production, so it gets its own copy of the order
    environment: the fail points are meant for the serving process only. The stack is topology's, but
    started faster (the two services migrate and boot side by side: neither needs the other to be
    ready) and torn down with SIGKILL, since these tests throw it away.
    """
    ord_env = {**SAGA_ENV, **(order_env or {})}
    inv_env = dict(inventory_env or {})
    if order_failpoints:
        ord_env["FAILPOINTS"] = order_failpoints
    if inventory_failpoints:
        inv_env["FAILPOINTS"] = inventory_failpoints
    s = Stack(workdir, kind, Database(kind, workdir, "inventory"), Database(kind, workdir, "orders"))
    s.configure(inv_env, ord_env)
    s.worker = Process("order_service", "worker", without_failpoints(s.order.env), workdir / "worker.log")
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(_migrate_and_serve, (s.inventory, s.order)))
        s.worker.start()
        yield s
    except BaseException:
        print(s.logs())  # shown with the failure
        raise
    finally:
        for p in (s.worker, s.order, s.inventory):
            if p is not None:
                p.kill()
        s.inventory_db.drop()
        s.order_db.drop()


def _migrate_and_serve(process: Process) -> None:
    migrate(process.module, process.env)
    process.start()


def restart_clean(process: Process) -> None:
    """Replace a crashed replica as an operator would: kill what is left, start it without fail points.

    (the server restarts a worker that exited with the fail point still armed, so the process
    itself has to go.)
    """
    process.kill()
    process.env = without_failpoints(process.env)
    process.start()


def expect_crash(call: Any) -> requests.Response | None:
    """Make a request that reaches a fail point: the connection drops, or a 5xx comes back."""
    try:
        response = call()
    except requests.ConnectionError:
        return None
    assert response.status_code >= 500, f"expected a crash, got {response.status_code}: {response.text}"
    return response


# --- reading the whole state -----------------------------------------------------------------------------


def all_orders(api: Api) -> dict[str, dict[str, Any]]:
    """Every order the order service holds, refused ones included, by id."""
    found: dict[str, dict[str, Any]] = {}
    for status in STATES:
        offset = 0
        while True:
            page = api.orders(status=status, limit=1000, offset=offset)
            found.update((o["order_id"], o) for o in page["orders"])
            offset += len(page["orders"])
            if not page["orders"] or offset >= page["total_count"]:
                break
    return found


def unfinished_count(api: Api) -> int:
    return sum(api.orders(status=s, limit=1)["total_count"] for s in UNFINISHED)


def wait_all_final(api: Api, timeout: float = RECOVERY_TIMEOUT) -> dict[str, dict[str, Any]]:
    """Poll until no order is left pending / failing / cancelling / fulfilling; then every order."""
    wait_until(lambda: unfinished_count(api) == 0, timeout=timeout, interval=0.25, what="every order to be final")
    orders = all_orders(api)
    assert {o["status"] for o in orders.values()} <= FINAL, Counter(o["status"] for o in orders.values())
    return orders


def audit(api: Api) -> requests.Response:
    return requests.get(f"{api.order_url}/admin/audit", headers=api.admin, timeout=30)


def wait_audit_clean(api: Api, timeout: float = RECOVERY_TIMEOUT) -> dict[str, Any]:
    """Poll the consistency audit until it answers 200 (a discrepancy is only reported once it persists)."""
    deadline = time.monotonic() + timeout
    while True:
        r = audit(api)
        if r.status_code == 200:
            report = r.json()
            assert report["consistent"] is True and report["discrepancies"] == [], report
            return report
        # 409: a discrepancy not yet settled; 503: a database just restarted, its pool reconnecting.
        assert r.status_code in (409, 503), f"audit answered {r.status_code}: {r.text}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"the audit still finds discrepancies: {r.text}")
        time.sleep(0.5)


def inventory_reservations(api: Api) -> dict[str, dict[str, Any]]:
    """Every reservation inventory holds or held (tombstones left out), by order id."""
    r = api.read(f"{api.inventory_url}/inventory/audit", headers=api.service)
    assert r.status_code == 200, r.text
    return {res["order_id"]: res for res in r.json()["reservations"]}


def assert_stock_matches_orders(
    api: Api, products: str | list[str], initial: int, orders: dict[str, dict[str, Any]]
) -> None:
    """No stock leaked or doubled, line by line: every confirmed order holds exactly its lines, every
    fulfilled one sold them, every other order holds nothing, and each product's columns add up to
    exactly that. `products` each started with `initial` units."""
    names = [products] if isinstance(products, str) else products
    reservations = inventory_reservations(api)
    for order in orders.values():
        lines = [(i["product_id"], i["quantity"]) for i in order["items"]]
        if not {p for p, _ in lines} & set(names):
            continue
        res = reservations.get(order["order_id"])
        expected = {"confirmed": "held", "fulfilled": "committed"}.get(order["status"])
        if expected is None:
            assert res is None or res["status"] == "released", (order, res)
        else:
            assert res is not None, order
            held = [(line["product_id"], line["quantity"]) for line in res["lines"]]
            assert (res["status"], held) == (expected, lines), (order, res)
    for product in names:
        units = {
            o["order_id"]: q
            for o in orders.values()
            for p, q in ((i["product_id"], i["quantity"]) for i in o["items"])
            if p == product
        }
        held = sum(q for oid, q in units.items() if orders[oid]["status"] == "confirmed")
        sold = sum(q for oid, q in units.items() if orders[oid]["status"] == "fulfilled")
        stock = api.product(product)
        assert stock["reserved_quantity"] == held, (product, stock, held)
        assert stock["available_quantity"] == initial - held - sold, (product, stock, initial, held, sold)


def assert_recovered(api: Api, products: str | list[str], initial: int) -> dict[str, dict[str, Any]]:
    """The end of every fault test: all orders final, the audit clean, stock conserved. Returns the orders."""
    orders = wait_all_final(api)
    wait_audit_clean(api)
    assert_stock_matches_orders(api, products, initial, orders)
    return orders


# --- a stream of orders from a few client threads ----------------------------------------------------------


@dataclass
class OrderStream:
    """Client threads placing orders of one unit until stopped, recording every answer and error."""

    api: Api
    product: str
    threads: int = 3
    created: list[str] = field(default_factory=list)
    answers: Counter[tuple[int, str]] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> OrderStream:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=60)

    def _run(self, i: int) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                r = session.post(
                    f"{self.api.order_url}/orders",
                    json={"product_id": self.product, "quantity": 1, "customer_id": f"C{i}"},
                    timeout=30,
                )
            except requests.RequestException as exc:
                with self._lock:
                    self.errors.append(type(exc).__name__)
                session = requests.Session()
                time.sleep(0.05)
                continue
            self._record(r)

    def _record(self, r: requests.Response) -> None:
        try:
            body = r.json()
        except ValueError:
            body = None
        with self._lock:
            if r.status_code == 201 and isinstance(body, dict) and body.get("status") == "confirmed":
                self.created.append(body["order_id"])
                self.answers[(201, "confirmed")] += 1
            elif r.status_code == 503 and isinstance(body, dict) and "Retry-After" in r.headers:
                self.answers[(503, body.get("error", {}).get("code", "?"))] += 1
            else:
                self.answers[(r.status_code, "unexpected")] += 1
                self.bad.append(f"{r.status_code} {r.headers.get('Content-Type')} {r.text[:300]}")

    def created_count(self) -> int:
        with self._lock:
            return len(self.created)

    def wait_for_more_orders(self, count: int = 5, timeout: float = 30) -> None:
        """Wait until `count` more orders than now were confirmed (the services are taking orders)."""
        target = self.created_count() + count
        wait_until(lambda: self.created_count() >= target, timeout=timeout, what=f"{count} more confirmed orders")
