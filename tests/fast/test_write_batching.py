"""Group commit of the order service's writes (service_common.storage.WriteBatcher), in-process on both
engines: concurrent orders share write transactions, each is answered on its own, and a write that fails
in a batch fails alone."""

from __future__ import annotations

import fcntl
import functools
import os
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from local.processes import wait_until
from service_common.storage import WriteBatcher, create_db_engine, reading, write_batcher, writing, written
from tests.inprocess import Services, Templates, services

CLIENTS = 16


@pytest.fixture
def apps(templates: Templates, tmp_path: Path) -> Any:
    # A pool as large as the clients: requests' reads must not wait on the batch's connection.
    with services(templates, tmp_path, {"db_pool_size": CLIENTS + 2}) as s:
        yield s


def _writes_per_transaction(apps: Services) -> tuple[float, float]:
    """(transactions, writes) so far, from GET /metrics."""
    text = apps.order.test_client().get("/metrics").get_data(as_text=True)

    def value(name: str) -> float:
        found = re.search(rf"^order_writes_per_transaction_{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    return value("count"), value("sum")


def _while_the_writer_is_held(apps: Services, requests: list[Callable[[], Any]]) -> list[Any]:
    """Run `requests` in threads while a write transaction of the batcher is held open, until all of them
    queue behind it (so the next transaction takes them together); then let it go."""
    engine = apps.order_engine
    batcher = write_batcher(engine)
    assert isinstance(batcher, WriteBatcher)
    held, let_go = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        held.set()
        let_go.wait(timeout=60)

    with ThreadPoolExecutor(len(requests) + 1) as pool:
        holder = pool.submit(written, engine, hold)
        assert held.wait(timeout=60)
        answers: list[Future[Any]] = [pool.submit(r) for r in requests]
        wait_until(lambda: batcher.pending == len(requests) + 1, 60, "every write queued", interval=0.01)
        let_go.set()
        holder.result(timeout=60)
        return [a.result(timeout=120) for a in answers]


def test_concurrent_orders_share_write_transactions_each_answered_on_its_own(apps: Services) -> None:
    product = apps.new_product(1000)
    before = _writes_per_transaction(apps)
    answers = _while_the_writer_is_held(
        apps, [functools.partial(apps.place, product, 1, f"c{n}") for n in range(CLIENTS)]
    )

    assert [a.status_code for a in answers] == [201] * CLIENTS
    assert sorted(a.json["customer_id"] for a in answers) == sorted(f"c{n}" for n in range(CLIENTS))
    assert len({a.json["order_id"] for a in answers}) == CLIENTS
    for a in answers:
        assert apps.order_json(a.json["order_id"])["status"] == "confirmed"
    assert apps.stock(product) == (1000 - CLIENTS, CLIENTS)
    transactions, writes = (after - b for after, b in zip(_writes_per_transaction(apps), before, strict=True))
    # The hold, each order's pending and confirmed writes; fewer transactions: the pending ones shared one.
    assert writes == 1 + 2 * CLIENTS
    assert transactions <= writes - CLIENTS + 1
    assert apps.audit().json["consistent"] is True


def test_a_write_that_fails_in_a_batch_fails_alone(apps: Services) -> None:
    """Two requests with one Idempotency-Key in one batch: the second's insert breaks the key's unique
    constraint, so the batch is run again one write at a time; the others are placed, the second replays."""
    product = apps.new_product(100)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    requests: list[Callable[[], Any]] = [lambda: apps.place(product, 2, "twin", headers=key)] * 2
    requests += [functools.partial(apps.place, product, 1, f"c{n}") for n in range(4)]
    answers = _while_the_writer_is_held(apps, requests)

    assert [a.status_code for a in answers] == [201] * 6
    assert answers[0].json == answers[1].json  # one order, answered twice
    assert len({a.json["order_id"] for a in answers}) == 5
    assert apps.stock(product) == (100 - 2 - 4, 6)
    assert apps.audit().json["consistent"] is True


def test_sqlite_writers_of_another_process_wait_at_the_gate_then_write(tmp_path: Path) -> None:
    """Two engines on one SQLite file stand for two server processes (each opens the gate's file itself):
    while one writes, the other waits at the gate (not in SQLite's busy handler) and writes once it is free."""
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    first, second = (create_db_engine(url, sqlite_busy_timeout_ms=300) for _ in range(2))
    with writing(first) as conn:
        conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
    with writing(first) as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        with pytest.raises(sa.exc.TimeoutError, match="another process"), writing(second):
            pass
    with writing(second) as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (2)"))
    with reading(first) as conn:
        assert conn.execute(sa.text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 2]
    first.dispose()
    second.dispose()


def test_sqlite_a_writer_waiting_in_another_process_is_seen_so_the_writer_is_not_taken_past_it(tmp_path: Path) -> None:
    """While one engine (process) writes and another waits at the gate, the waiter holds the shared
    'waiting' lock: a process whose next batch is ready then polls as the waiter does instead of taking
    the writer the moment it is free."""
    url = f"sqlite:///{tmp_path / 'fair.db'}"
    first, second = (create_db_engine(url, sqlite_busy_timeout_ms=30_000) for _ in range(2))
    waiting_file = tmp_path / "fair.db-writer-waiting"

    def someone_waits() -> bool:
        fd = os.open(waiting_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    with ThreadPoolExecutor(1) as pool:
        with writing(first):
            assert not someone_waits()
            waiter = pool.submit(lambda: written(second, lambda conn: conn.execute(sa.text("SELECT 1")).scalar()))
            wait_until(someone_waits, 30, "the second engine to wait at the gate", interval=0.01)
        assert waiter.result(timeout=60) == 1
    assert not someone_waits()
    first.dispose()
    second.dispose()
