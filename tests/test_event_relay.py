"""The event relay as it runs: recovery workers (`python -m order_service worker`) with EVENTS_BROKER_URL,
a nats-server of the test's own, both services as processes, parallel clients placing, cancelling and
fulfilling. Every event of the outbox reaches the broker once and each order's in sequence: with two
relays at once (publishes counted at the relays, since JetStream's dedupe would hide a double), after a
crash between the publish and the mark, and across a 10 s broker outage."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from local.broker import NatsServer
from local.processes import free_port, wait_until
from order_service.broker import BrokerConfig
from tests.broker_client import own_stream, stream_env, stream_messages
from tests.markers import ENGINES, requires_program
from tests.stack_client import Api
from tests.topology import Process, Stack, stack

pytestmark = requires_program("nats-server")

# A short lease, so a takeover happens within a test (the settings want it above 2 x (timeout + 1)).
RELAY_ENV = {
    "EVENTS_PUBLISH_TIMEOUT": "0.5",
    "EVENTS_RELAY_LEASE_SECONDS": "4",
    "EVENTS_RELAY_POLL_SECONDS": "0.05",
}


@dataclass
class Relays:
    stack: Stack
    broker: NatsServer
    stream: BrokerConfig
    workers: list[Process]

    def worker(self, name: str, **env: str) -> Process:
        port = free_port()
        worker_env = {**self.stack.order.env, **stream_env(self.stream), **RELAY_ENV, **env}
        worker_env["WORKER_METRICS_PORT"] = str(port)
        worker_env["LOG_LEVEL"] = "INFO"
        return Process("order_service", "worker", worker_env, self.stack.workdir / f"{name}.log", port, name=name)

    def engine(self) -> sa.Engine:
        return self.stack.order_db.engine()


@contextmanager
def relays(tmp_path: Path, kind: str, count: int, **worker_env: str) -> Iterator[Relays]:
    broker = NatsServer(tmp_path / "nats")
    (tmp_path / "nats").mkdir()
    broker.start()
    try:
        with stack(tmp_path, kind) as s:
            r = Relays(s, broker, own_stream(broker.url), [])
            r.workers = [r.worker(f"worker{i}", **worker_env) for i in range(count)]
            try:
                for w in r.workers:
                    w.start()
                yield r
            except BaseException:
                print(s.logs(), *(w.log.read_text()[-3000:] for w in r.workers if w.log and w.log.exists()))
                raise
            finally:
                for w in r.workers:
                    w.stop(signal.SIGTERM, timeout=15)
    finally:
        broker.stop()


# --- load and checks ---------------------------------------------------------------------------------------


def changes(api: Api, clients: int, orders_each: int, stop: threading.Event | None = None) -> int:
    """`clients` threads each place orders (a third then cancelled, a third fulfilled); the orders placed.
    Until `stop` is set when given (at most orders_each per client either way)."""
    product = api.new_product(100_000)
    placed = itertools.count()
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            orders(requests.Session())
        except BaseException as exc:  # shown by the test's thread
            errors.append(exc)

    def orders(session: requests.Session) -> None:
        for n in range(orders_each):
            if stop is not None and stop.is_set():
                return
            r = session.post(f"{api.order_url}/orders", json={"product_id": product, "quantity": 1}, timeout=30)
            assert r.status_code == 201, r.text
            next(placed)
            order_id = r.json()["order_id"]
            if n % 3 == 1:
                assert session.delete(f"{api.order_url}/orders/{order_id}", timeout=30).status_code == 200
            elif n % 3 == 2:
                done = session.post(f"{api.order_url}/orders/{order_id}/fulfil", headers=api.admin, timeout=30)
                assert done.status_code == 200, done.text

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return next(placed)


def outbox(engine: sa.Engine) -> tuple[list[str], int]:
    """The outbox's event ids by position, and how many are not yet published."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT order_id, sequence, published_at FROM order_events ORDER BY position")
        ).all()
    return [f"ORD{r.order_id:08d}:{r.sequence}" for r in rows], sum(r.published_at is None for r in rows)


def wait_all_published(engine: sa.Engine, timeout: float = 60) -> list[str]:
    wait_until(lambda: outbox(engine)[1] == 0, timeout, "every event published")
    return outbox(engine)[0]


def assert_broker_has_each_once_in_order(stream: BrokerConfig, ids: list[str]) -> None:
    """Every outbox event is in the stream exactly once, and each order's events in sequence."""
    messages = stream_messages(stream)
    seen = [m.msg_id for m in messages]
    assert len(seen) == len(set(seen)), "an event id stored twice"
    assert sorted(seen) == sorted(ids)
    assert all(m.event["id"] == m.msg_id for m in messages)
    by_order: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        by_order[m.event["order_id"]].append(m.event["sequence"])
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_order.values())


def metric(process: Process, name: str) -> float:
    """The sum of a metric's samples on a process's /metrics (0 when it has none yet)."""
    text = requests.get(f"{process.url}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def published(worker: Process, ack: str) -> float:
    text = requests.get(f"{worker.url}/metrics", timeout=5).text
    found = re.search(rf'^order_events_published_total{{ack="{ack}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ENGINES)
def test_two_relays_publish_every_event_once_in_order_and_hand_over(tmp_path: Path, kind: str) -> None:
    # The default 10 s lease: on a busy machine a relay stalled past a 4 s one would rightly lose it, and a
    # redelivery would then be a publish counted twice (same id) that this test is not about.
    with relays(tmp_path, kind, 2, EVENTS_RELAY_LEASE_SECONDS="10") as r:
        for w in r.workers:
            w.wait_ready()
        api = Api.of(r.stack)
        changes(api, clients=6, orders_each=6)
        engine = r.engine()
        ids = wait_all_published(engine)
        # Counted at the relays: one publish per event, none the broker had already; one relay did it all.
        counts = [published(w, "stored") for w in r.workers]
        assert sum(counts) == len(ids) and sorted(counts)[0] == 0, counts
        assert sum(published(w, "duplicate") for w in r.workers) == 0

        # The active relay's worker stops (marks what it published, gives up the lease); the other takes over.
        active, standby = (r.workers[0], r.workers[1]) if counts[0] else (r.workers[1], r.workers[0])
        before = published(standby, "stored")
        active.stop(signal.SIGTERM, timeout=20)
        changes(api, clients=4, orders_each=3)
        ids = wait_all_published(engine)
        assert published(standby, "stored") == before + len(ids) - sum(counts)
        assert published(standby, "duplicate") == 0
        assert_broker_has_each_once_in_order(r.stream, ids)
        engine.dispose()


def test_a_crash_between_publish_and_mark_republishes_with_the_same_id(tmp_path: Path) -> None:
    with relays(tmp_path, "sqlite", 1, FAILPOINTS="relay_after_publish") as r:
        (crashing,) = r.workers
        api = Api.of(r.stack)
        product = api.new_product(10)
        first = api.place(product, 1).json()["order_id"]
        # The relay publishes the order's first event, and the worker dies before marking it.
        assert crashing.wait_exit(timeout=30) == 70
        engine = r.engine()
        ids, waiting = outbox(engine)
        assert ids == [f"{first}:1"] and waiting == 1
        assert [m.msg_id for m in stream_messages(r.stream)] == [f"{first}:1"]

        restarted = r.worker("restarted")
        r.workers.append(restarted)
        restarted.start()
        restarted.wait_ready()
        assert api.cancel(first).status_code == 200
        ids = wait_all_published(engine)
        assert ids == [f"{first}:1", f"{first}:2"]
        # Published again with the same id: JetStream recognised it, and a consumer reads it once.
        assert published(restarted, "duplicate") == 1
        assert published(restarted, "stored") == 1
        assert_broker_has_each_once_in_order(r.stream, ids)
        engine.dispose()


def test_a_broker_outage_of_ten_seconds_under_load_loses_nothing(tmp_path: Path) -> None:
    kind = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    with relays(tmp_path, kind, 1) as r:
        (worker,) = r.workers
        worker.wait_ready()
        api = Api.of(r.stack)
        stop = threading.Event()
        load = threading.Thread(target=changes, args=(api, 4, 400, stop))
        load.start()
        try:
            time.sleep(1)
            r.broker.stop()
            time.sleep(10)
            engine = r.engine()
            # Meanwhile the outbox grew, and the relay kept trying, with backoff.
            assert outbox(engine)[1] > 0
            assert metric(worker, "order_events_publish_failures_total") > 0
            # The relay's lag, as the order service's /metrics reads it from the outbox.
            assert metric(r.stack.order, "order_events_oldest_unpublished_age_seconds") > 1
            assert metric(r.stack.order, "order_events_unpublished") > 0
            r.broker.start()
            time.sleep(1)
        finally:
            stop.set()
            load.join()
        ids = wait_all_published(engine)
        assert metric(worker, "order_events_publish_retries_total") > 0
        assert_broker_has_each_once_in_order(r.stream, ids)
        engine.dispose()
