"""Many replicas for real: 3 + 3 processes on PostgreSQL behind HAProxy (the Kubernetes Services'
stand-in), correct under races, spread over every replica, and a rolling restart nobody notices."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from local.cluster import Cluster
from local.processes import ServiceProcess, drop_database, free_port, server_url, wait_until
from order_service.broker import BrokerConfig
from service_common.storage import normalise_url
from tests.broker_client import stream_messages
from tests.cart_race import race_opposite_carts
from tests.event_consumer import Consumer, assert_exactly_once_in_order
from tests.markers import requires_program
from tests.stack_client import Api, parallel
from tests.topology import ADMIN_TOKEN, SERVICE_TOKEN

pytestmark = [
    requires_program("haproxy"),
    requires_program("nats-server"),
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="the cluster needs TEST_DATABASE_URL"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    prefix = f"t_cluster_{uuid.uuid4().hex[:8]}"
    c = Cluster(
        pg_url=server_url(os.environ["TEST_DATABASE_URL"]),
        workdir=Path(tmp_path_factory.mktemp("cluster")),
        replicas=3,
        order_port=free_port(),
        inventory_port=free_port(),
        database_prefix=prefix,
        extra_env={"SERVICE_TOKEN": SERVICE_TOKEN, "ADMIN_TOKEN": ADMIN_TOKEN, "LOG_LEVEL": "WARNING"},
    )
    try:
        c.start()
        yield c
    finally:
        c.stop()
        for name in ("inventory", "orders"):
            drop_database(os.environ["TEST_DATABASE_URL"], f"{prefix}_{name}")


@pytest.fixture
def cluster_api(cluster: Cluster) -> Api:
    return Api(cluster.order_url, cluster.inventory_url)


@pytest.mark.parametrize("round_", range(2))
def test_racing_orders_across_replicas_never_oversell(cluster: Cluster, cluster_api: Api, round_: int) -> None:
    product = cluster_api.new_product(16)
    before = cluster.requests_by_server("inventory_service")
    responses = parallel(64, lambda i: cluster_api.place(product, 1, f"C{i}"))
    assert Counter(r.status_code for r in responses) == {201: 16, 409: 48}
    stock = cluster_api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (0, 16)
    # Every order replica took orders, and every inventory replica took their reserves.
    assert {r.headers["X-Served-By"] for r in responses} == {"order1", "order2", "order3"}
    after = cluster.requests_by_server("inventory_service")
    assert all(after[name] > before.get(name, 0) for name in ("inventory1", "inventory2", "inventory3"))


def test_a_consumer_on_the_broker_sees_every_confirmed_order_of_the_race(cluster: Cluster, cluster_api: Api) -> None:
    """The 64-order race on 3 replicas, 3 workers (one relay active): every order confirmed in it reaches
    the cluster's broker once, as order.confirmed."""
    product = cluster_api.new_product(16)
    responses = parallel(64, lambda i: cluster_api.place(product, 1, f"C{i}"))
    confirmed = {r.json()["order_id"] for r in responses if r.status_code == 201}
    assert len(confirmed) == 16
    assert cluster.broker is not None
    stream = BrokerConfig(cluster.broker.url, "ORDER_EVENTS", "orders.events", 2.0)

    def seen() -> list[str]:
        return [
            m.event["order_id"]
            for m in stream_messages(stream)
            if m.event["type"] == "order.confirmed" and m.event["order_id"] in confirmed
        ]

    wait_until(lambda: set(seen()) == confirmed, 30, "every confirmed order on the broker")
    assert sorted(seen()) == sorted(confirmed)


def test_carts_racing_across_replicas_neither_deadlock_nor_oversell(cluster_api: Api) -> None:
    race_opposite_carts(cluster_api)


def test_plenty_of_stock_gives_every_order_a_distinct_id(cluster_api: Api) -> None:
    product = cluster_api.new_product(1000)
    responses = parallel(64, lambda i: cluster_api.place(product, 1, f"C{i}"))
    assert [r.status_code for r in responses] == [201] * 64
    ids = {r.json()["order_id"] for r in responses}
    assert len(ids) == 64
    assert all(cluster_api.order(i)["status"] == "confirmed" for i in ids)


def test_parallel_cancels_on_different_replicas_release_once(cluster_api: Api) -> None:
    product = cluster_api.new_product(10)
    order = cluster_api.place(product, 5).json()
    responses = parallel(20, lambda _: cluster_api.cancel(order["order_id"]))
    assert {r.status_code for r in responses} <= {200, 202}
    assert len({r.headers["X-Served-By"] for r in responses}) == 3
    stock = cluster_api.product(product)
    assert (stock["available_quantity"], stock["reserved_quantity"]) == (10, 0)


def test_parallel_idempotent_replays_on_different_replicas_make_one_order(cluster_api: Api) -> None:
    product = cluster_api.new_product(50)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    responses = parallel(24, lambda _: cluster_api.place(product, 2, "C1", headers=key))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["order_id"] for r in responses}) == 1
    assert len({r.headers["X-Served-By"] for r in responses}) == 3
    assert cluster_api.product(product)["available_quantity"] == 48


def test_rolling_restart_is_invisible_to_a_client(cluster: Cluster, cluster_api: Api) -> None:
    product = cluster_api.new_product(100_000)
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.post(
                    f"{cluster_api.order_url}/orders", json={"product_id": product, "quantity": 1}, timeout=30
                )
                statuses[r.status_code] += 1
                r2 = session.get(f"{cluster_api.inventory_url}/inventory/{product}", timeout=30)
                statuses[r2.status_code] += 1
            except requests.RequestException as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        rolling_restart(cluster, cluster.inventory + cluster.order)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert set(statuses) == {200, 201}, statuses
    placed = statuses[201]
    stock = cluster_api.product(product)
    assert stock["available_quantity"] == 100_000 - placed
    assert stock["reserved_quantity"] == placed


def rolling_restart(cluster: Cluster, replicas: list[ServiceProcess]) -> None:
    """What the kubelet does: replace each replica in turn. SIGTERM (it drains: not ready, still serving),
    wait until HAProxy has taken it out, wait for it to exit, start the new one, wait until it is UP again."""
    for replica in replicas:
        replica.signal(signal.SIGTERM)
        wait_until(
            lambda r=replica: cluster.server_state(r.name).startswith("DOWN"),
            30,
            f"{replica.name} DOWN",
            ignoring=(OSError, KeyError),
        )
        code = replica.wait(timeout=60)
        assert code == 0, f"{replica.name} exited with {code}"
        replica.start()
        wait_until(
            lambda r=replica: cluster.server_state(r.name) == "UP",
            60,
            f"{replica.name} UP",
            ignoring=(OSError, KeyError),
        )


def test_a_consumer_tailing_the_feed_sees_every_change_once_in_order(cluster: Cluster, cluster_api: Api) -> None:
    """8 clients at once place, cancel and fulfil orders across the 3 replicas while a consumer follows the
    feed from its `next`: it sees every change the database recorded, once, in per-order order."""
    product = cluster_api.new_product(10_000)

    def client(i: int) -> None:
        for n in range(6):
            order_id = cluster_api.place(product, 1, f"C{i}").json()["order_id"]
            if n % 3 == 1:
                cluster_api.cancel(order_id)
            elif n % 3 == 2:
                cluster_api.fulfil(order_id)

    engine = sa.create_engine(
        normalise_url(f"{server_url(os.environ['TEST_DATABASE_URL'])}/{cluster.database_prefix}_orders")
    )
    try:
        with Consumer(cluster.order_url) as consumer:
            parallel(8, client)
            consumer.caught_up_with(engine)
        assert_exactly_once_in_order(consumer.events, engine)
    finally:
        engine.dispose()
