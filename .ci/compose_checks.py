"""The compose stack checked through its containers (run by .ci/docker-stack.sh once `up --wait` returned).

1. The migrate steps completed and every long-running service is healthy and ready.
2. The seed's curl walkthrough: order -> stock down -> cancel -> stock back.
3. PostgreSQL stopped under load: both services answer 503 (JSON, never 500) and recover once it is back,
   without a restart of their own.
4. The order container killed (SIGKILL) while orders stream in, then `docker compose start order-service`.
5. The recovery worker finishes whatever 3 and 4 left in flight, and GET /admin/audit is clean.
6. Every order event of all that reached the broker: none left unpublished in the outbox, and the
   JetStream stream holds as many messages as the outbox has events.

Usage: compose_checks.py ORDER_URL INVENTORY_URL ADMIN_TOKEN (COMPOSE_PROJECT_NAME and COMPOSE_FILE set).
Exits non-zero with the reason on the first failed check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests

IN_FLIGHT = ("pending", "failing", "cancelling", "fulfilling")
LONG_RUNNING = ("postgres", "inventory-service", "order-service", "order-worker", "nats")


class CheckFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def say(message: str) -> None:
    print(f"   {message}", flush=True)


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 15) -> tuple[int, Any]:
    """(status, parsed JSON body); status 0 when nothing answered."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.request(method, url, json=body, headers=headers, timeout=timeout)
    except requests.RequestException:
        return 0, None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"unparsed": response.text[:300]}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def compose(*args: str) -> str:
    result = subprocess.run(["docker-compose", *args], capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise CheckFailed(f"docker-compose {' '.join(args)}: {result.stderr.strip()[-500:]}")
    return result.stdout


def container(service: str) -> dict[str, Any]:
    (cid,) = compose("ps", "-a", "-q", service).split()
    inspected: list[dict[str, Any]] = json.loads(
        subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout
    )
    return inspected[0]


def health(service: str) -> str:
    state = container(service)["State"]
    return str(state.get("Health", {}).get("Status", state["Status"]))


def psql(database: str, sql: str) -> str:
    return compose("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", database, "-Atc", sql).strip()


class Stack:
    def __init__(self, order_url: str, inventory_url: str, admin_token: str) -> None:
        self.order = order_url.rstrip("/")
        self.inventory = inventory_url.rstrip("/")
        self.admin = admin_token

    def available(self, product: str) -> int:
        status, body = http("GET", f"{self.inventory}/inventory/{product}")
        check(status == 200, f"GET /inventory/{product}: {status} {body}")
        return int(body["available_quantity"])

    def in_flight(self) -> int:
        total = 0
        for state in IN_FLIGHT:
            status, body = http("GET", f"{self.order}/orders?status={state}&limit=1", token=self.admin)
            check(status == 200, f"GET /orders?status={state}: {status} {body}")
            total += int(body["total_count"])
        return total

    # --- 1 ---------------------------------------------------------------------------------------------------
    def migrations_and_health(self) -> None:
        for step in ("inventory-migrate", "order-migrate"):
            state = container(step)["State"]
            check(state["Status"] == "exited" and state["ExitCode"] == 0, f"{step}: {state}")
            check("schema at head" in compose("logs", "--no-color", step), f"{step} did not log 'schema at head'")
        for service in LONG_RUNNING:
            check(health(service) == "healthy", f"{service} is {health(service)}")
        for name, url in (("order", self.order), ("inventory", self.inventory)):
            status, body = http("GET", f"{url}/health/ready")
            check(status == 200 and set(body["checks"].values()) == {"ok"}, f"{name} ready: {status} {body}")
        say("migrations completed; postgres, both services and the worker healthy; both services ready")

    # --- 2 ---------------------------------------------------------------------------------------------------
    def walkthrough(self) -> None:
        before = self.available("P001")
        status, order = http(
            "POST", f"{self.order}/orders", {"product_id": "P001", "quantity": 2, "customer_id": "C123"}
        )
        check(status == 201 and order["status"] == "confirmed", f"POST /orders: {status} {order}")
        check(self.available("P001") == before - 2, "stock did not go down by 2")
        status, read = http("GET", f"{self.order}/orders/{order['order_id']}")
        check(status == 200 and read["status"] == "confirmed", f"GET the order: {status} {read}")
        status, cancelled = http("DELETE", f"{self.order}/orders/{order['order_id']}")
        check(status == 200 and cancelled["status"] == "cancelled", f"DELETE the order: {status} {cancelled}")
        check(self.available("P001") == before, "stock did not come back after the cancel")
        say(f"walkthrough: {order['order_id']} confirmed, P001 {before} -> {before - 2} -> cancelled -> {before}")

    # --- load ------------------------------------------------------------------------------------------------
    def load(self, stop: threading.Event, seen: Counter[str], errors: list[str], name: str) -> None:
        """Orders (each cancelled next, so stock lasts) and reads until `stop`; counts the answers and keeps
        any that is not allowed: a 5xx other than a JSON 503, a 4xx other than 409."""
        placed: list[str] = []
        n = 0
        while not stop.is_set():
            n += 1
            if placed:
                call = ("DELETE", f"{self.order}/orders/{placed.pop()}", None)
            else:
                call = (
                    ("POST", f"{self.order}/orders", {"product_id": "P002", "quantity": 1, "customer_id": name}),
                    ("GET", f"{self.inventory}/inventory/P002", None),
                    ("GET", f"{self.order}/orders?limit=5", None),
                )[n % 3]
            method, url, body = call
            status, answer = http(method, url, body, timeout=10)
            seen[f"{method} {status}"] += 1
            if method == "POST" and status == 201:
                placed.append(answer["order_id"])
            if status == 0:
                time.sleep(0.05)  # nothing listening (the killed container): do not spin
                continue
            json_503 = status == 503 and {"code", "message"} <= set((answer or {}).get("error", {}))
            if (status >= 400 and status not in (409, 503)) or (status == 503 and not json_503):
                errors.append(f"{method} {url}: {status} {answer}")

    def under_load(self, action: Callable[[], None], clients: int = 4) -> Counter[str]:
        stop = threading.Event()
        seen: Counter[str] = Counter()
        errors: list[str] = []
        threads = [
            threading.Thread(target=self.load, args=(stop, seen, errors, f"load-{i}"), daemon=True)
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: seen["POST 201"] >= 10, 60, "orders to flow")
            action()
            after = seen["POST 201"]
            wait_until(lambda: seen["POST 201"] >= after + 10, 60, "orders to flow again")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        check(not errors, "answers outside 2xx / 409 / JSON 503: " + "; ".join(errors[:5]))
        return seen

    # --- 3 ---------------------------------------------------------------------------------------------------
    def postgres_restart(self) -> None:
        services = ("inventory-service", "order-service", "order-worker")
        started = {s: (container(s)["State"]["StartedAt"], container(s)["RestartCount"]) for s in services}

        def outage() -> None:
            compose("stop", "postgres")
            for name, url, body in (
                ("order", f"{self.order}/orders", {"product_id": "P003", "quantity": 1}),
                ("inventory", f"{self.inventory}/inventory/P003", None),
            ):
                answers: list[tuple[int, Any]] = []

                def answers_503(url: str = url, body: Any = body, answers: list[tuple[int, Any]] = answers) -> bool:
                    answers.append(http("POST" if body else "GET", url, body))
                    return answers[-1][0] == 503

                wait_until(answers_503, 30, f"{name} to answer 503 with PostgreSQL down (last: {answers[-1:]})")
                code = answers[-1][1]["error"]["code"]
                say(f"PostgreSQL down: {name} answers 503 {code}")
            compose("start", "postgres")
            wait_until(lambda: health("postgres") == "healthy", 90, "postgres healthy again")
            for name, url in (("order", self.order), ("inventory", self.inventory)):
                wait_until(lambda url=url: http("GET", f"{url}/health/ready")[0] == 200, 60, f"{name} ready again")

        seen = self.under_load(outage)
        after = {s: (container(s)["State"]["StartedAt"], container(s)["RestartCount"]) for s in services}
        check(after == started, f"a service restarted: {started} -> {after}")
        say(f"recovered without a restart of their own; load answers: {dict(seen)}")

    # --- 4 ---------------------------------------------------------------------------------------------------
    def kill_order_service(self) -> None:
        killed: dict[str, str] = {}

        def kill() -> None:
            cid = container("order-service")["Id"]
            subprocess.run(["docker", "kill", cid], capture_output=True, check=True)
            in_flight = "select count(*) from orders where status in ('pending', 'failing', 'cancelling', 'fulfilling')"
            killed["left"] = psql("orders", in_flight)
            compose("start", "order-service")
            wait_until(lambda: health("order-service") == "healthy", 120, "order-service healthy again")

        seen = self.under_load(kill)
        say(f"order container killed mid-stream ({killed['left']} orders in flight) and started; load: {dict(seen)}")

    # --- 5 ---------------------------------------------------------------------------------------------------
    def worker_finishes_and_audit(self) -> None:
        # The worker acts on an order once it has not moved for RECOVERY_GRACE_SECONDS (30 in compose.yaml).
        wait_until(lambda: self.in_flight() == 0, 150, "the worker to finish the orders left in flight")
        recovered = compose("logs", "--no-color", "order-worker").count("recovered order")
        status, report = http("GET", f"{self.order}/admin/audit", token=self.admin, timeout=60)
        check(status == 200 and report["consistent"] is True, f"audit: {status} {report}")
        check(health("order-worker") == "healthy", "the worker is not healthy")
        say(f"nothing left in flight (the worker recovered {recovered}); audit clean: {report['checked']}")

    # --- 6 ---------------------------------------------------------------------------------------------------
    def events_reach_the_broker(self) -> None:
        def unpublished() -> int:
            return int(psql("orders", "SELECT count(*) FROM order_events WHERE published_at IS NULL"))

        wait_until(lambda: unpublished() == 0, 60, "the relay to publish every order event")
        events = int(psql("orders", "SELECT count(*) FROM order_events"))
        check(events > 0, "the outbox has no event")
        jsz = json.loads(
            compose(
                "exec", "-T", "nats", "wget", "-q", "-O", "-", "http://127.0.0.1:8222/jsz?accounts=true&streams=true"
            )
        )
        streams = {
            stream["name"]: stream["state"]["messages"]
            for account in jsz.get("account_details", [])
            for stream in account.get("stream_detail", [])
        }
        check(streams.get("ORDER_EVENTS") == events, f"the broker holds {streams}, the outbox {events} events")
        say(f"all {events} order events published; the broker's ORDER_EVENTS stream holds {events} messages")


def main(argv: list[str]) -> int:
    stack = Stack(*argv)
    steps = (
        stack.migrations_and_health,
        stack.walkthrough,
        stack.postgres_restart,
        stack.kill_order_service,
        stack.worker_finishes_and_audit,
        stack.events_reach_the_broker,
    )
    for step in steps:
        started = time.monotonic()
        try:
            step()
        except CheckFailed as exc:
            print(f"FAILED {step.__name__}: {exc}", file=sys.stderr)
            return 1
        say(f"({step.__name__}: {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
