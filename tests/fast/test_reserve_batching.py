"""Group commit of reserves (inventory_service.batching, storage.reserve_many), in-process on both engines:
concurrent reserves of one product share a transaction, each is decided and answered on its own, and
batches lock products in product-id order."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

import inventory_service
from inventory_service import storage
from inventory_service.batching import ReserveBatcher
from inventory_service.domain import (
    InsufficientStock,
    Line,
    ProductNotFound,
    ReservationMismatch,
    ReservationNotFound,
    ReservationReleased,
)
from inventory_service.settings import Settings
from local.processes import wait_until
from service_common.storage import engine_for, writing
from tests.inprocess import ADMIN, ADMIN_TOKEN, SERVICE, SERVICE_TOKEN, Services, Templates

CLIENTS = 64


def _stock(engine: sa.Engine, product_id: str) -> tuple[int, int]:
    product = storage.get_product(engine, product_id)
    return product.available_quantity, product.reserved_quantity


def _conserved(engine: sa.Engine, *products: str) -> None:
    report = storage.stock_report(engine)
    for product in products:
        s = report[product]
        assert (s["ledger_available"], s["ledger_reserved"]) == (s["available_quantity"], s["reserved_quantity"])
        assert s["reserved_quantity"] == s["held_reservations"]


def _retried_and_tombstone(engine: sa.Engine, product_id: str) -> tuple[str, str, str]:
    """A fresh prefix for order ids, an order already holding 1 of the product (asked again: a retry), and an
    order released before it reserved (a tombstone)."""
    run = uuid.uuid4().hex[:8]
    retried, tombstone = f"{run}-retried", f"{run}-tombstone"
    storage.reserve(engine, retried, [Line(product_id, 1)])
    storage.release(engine, tombstone)
    return run, retried, tombstone


def _decided(engine: sa.Engine, asks: list[tuple[str, list[Line]]]) -> list[Any]:
    """Each reserve of one batch (reserve_many) as its caller is answered: the Reserved, or the refusal."""
    answers: list[Any] = []
    for (order_id, lines), outcome in zip(asks, storage.reserve_many(engine, asks), strict=True):
        try:
            answers.append(storage.settle(engine, order_id, lines, outcome))
        except Exception as exc:
            answers.append(exc)
    return answers


@pytest.mark.parametrize(
    ("stock", "expected", "left"),
    [
        (10, ["Reserved", "Reserved", "Reserved"], 1),  # all fit: one conditional update takes the 9
        (5, ["Reserved", "InsufficientStock", "Reserved"], 0),  # 9 do not: locked, read, chosen in order
    ],
)
def test_a_batch_of_one_product_holds_what_fits_in_arrival_order(
    apps: Services, stock: int, expected: list[str], left: int
) -> None:
    engine = apps.inventory.extensions["engine"]
    p = apps.new_product(stock)
    run = uuid.uuid4().hex[:8]
    asks: list[tuple[str, list[Line]]] = [
        (f"{run}-a", [Line(p, 3)]),
        (f"{run}-b", [Line(p, 4)]),
        (f"{run}-c", [Line(p, 2)]),
    ]
    answers = _decided(engine, asks)
    assert [type(a).__name__ for a in answers] == expected
    assert _stock(engine, p) == (left, stock - left)
    for a in answers:
        if not isinstance(a, Exception):
            assert a.created and a.reservation.unit_price == Decimal("10.00")
    _conserved(engine, p)


def test_a_batch_decides_each_reserve_on_its_own(apps: Services) -> None:
    engine = apps.inventory.extensions["engine"]
    p, q = apps.new_product(5), apps.new_product(10)
    run, retried, tombstone = _retried_and_tombstone(engine, q)
    asks: list[tuple[str, list[Line]]] = [
        (f"{run}-a", [Line(p, 2)]),
        (f"{run}-short", [Line(p, 4)]),  # 3 left after a: refused, and takes nothing from c
        (f"{run}-c", [Line(p, 3)]),
        (f"{run}-unknown", [Line(q, 1), Line("NO-SUCH-PRODUCT", 1)]),
        (retried, [Line(q, 1)]),
        (tombstone, [Line(q, 1)]),
        (f"{run}-cart", [Line(q, 2), Line(p, 1)]),  # p is empty by now: short, q untouched
        (f"{run}-a", [Line(p, 2)]),  # the same order twice in one batch: the second is its retry
        (f"{run}-mismatch", [Line(q, 4)]),
        (f"{run}-mismatch", [Line(q, 5)]),
    ]
    answers = _decided(engine, asks)
    assert [type(a).__name__ for a in answers] == [
        "Reserved",
        "InsufficientStock",
        "Reserved",
        "ProductNotFound",
        "Reserved",
        "ReservationReleased",
        "InsufficientStock",
        "Reserved",
        "Reserved",
        "ReservationMismatch",
    ]
    assert [a.created for a in answers if not isinstance(a, Exception)] == [True, True, False, False, True]
    assert isinstance(answers[1], InsufficientStock) and isinstance(answers[6], InsufficientStock)
    assert isinstance(answers[3], ProductNotFound) and isinstance(answers[5], ReservationReleased)
    assert isinstance(answers[9], ReservationMismatch)
    assert answers[7].reservation == answers[0].reservation
    assert _stock(engine, p) == (0, 5)
    assert _stock(engine, q) == (10 - 1 - 4, 1 + 4)
    for refused in (f"{run}-short", f"{run}-unknown", f"{run}-cart"):
        with pytest.raises(ReservationNotFound):
            storage.get_reservation(engine, refused)
    _conserved(engine, p, q)


def test_a_batch_of_one_product_settles_retries_tombstones_and_twins_as_reserves_alone_would(apps: Services) -> None:
    """One product, one line each: on PostgreSQL the batch is one statement (keys, stock, ledger, lines)."""
    engine = apps.inventory.extensions["engine"]
    p = apps.new_product(5)
    run, retried, tombstone = _retried_and_tombstone(engine, p)
    asks: list[tuple[str, list[Line]]] = [
        (f"{run}-b", [Line(p, 2)]),
        (retried, [Line(p, 1)]),
        (tombstone, [Line(p, 1)]),
        (f"{run}-a", [Line(p, 2)]),
        (f"{run}-b", [Line(p, 2)]),  # the same order twice in one batch: the second is its retry
    ]
    answers = _decided(engine, asks)
    assert [type(a).__name__ for a in answers] == [
        "Reserved",
        "Reserved",
        "ReservationReleased",
        "Reserved",
        "Reserved",
    ]
    assert [a.created for a in answers if not isinstance(a, Exception)] == [True, False, True, False]
    assert answers[4].reservation == answers[0].reservation
    assert [(x.product_id, x.quantity, x.unit_price) for x in answers[3].reservation.lines] == [
        (p, 2, Decimal("10.00"))
    ]
    assert _stock(engine, p) == (0, 5)
    _conserved(engine, p)

    # A batch with no new key: all retries (answered again), or a product nobody has (refused).
    assert [a.created for a in _decided(engine, asks[1::2])] == [False, False]  # retried, and a
    (unknown,) = _decided(engine, [(f"{run}-unknown", [Line("NO-SUCH-PRODUCT", 1)])])
    assert isinstance(unknown, ProductNotFound)
    with pytest.raises(ReservationNotFound):
        storage.get_reservation(engine, f"{run}-unknown")
    assert _stock(engine, p) == (0, 5)
    _conserved(engine, p)


@contextlib.contextmanager
def _inventory_alone(templates: Templates, tmp_path: Path, **settings: Any) -> Iterator[Flask]:
    """Inventory alone on a fresh copy of the template database, with these settings."""
    with templates.copies(tmp_path) as (_, inventory_db):
        app = inventory_service.create_app(
            Settings(
                database_url=inventory_db,
                service_token=SERVICE_TOKEN,
                admin_token=ADMIN_TOKEN,
                port=0,
                scratch_dir=tmp_path,
                **settings,
            )
        )
        try:
            yield app
        finally:
            app.extensions["engine"].dispose()


@pytest.fixture
def inventory(templates: Templates, tmp_path: Path) -> Iterator[Flask]:
    """Inventory alone, with lock waits long enough that a test may hold a product's row while reserves queue."""
    with _inventory_alone(
        templates,
        tmp_path,
        lock_timeout_ms=60_000,
        statement_timeout_ms=60_000,
        sqlite_busy_timeout_ms=60_000,
        db_pool_size=8,
    ) as app:
        yield app


def _new_product(app: Flask, quantity: int) -> str:
    product_id = f"B{uuid.uuid4().hex[:12]}"
    body = {"product_id": product_id, "name": "Batched", "price": 2.5, "quantity": quantity}
    assert app.test_client().post("/inventory", json=body, headers=ADMIN).status_code == 201
    return product_id


def _batch_sizes(app: Flask) -> tuple[float, float, float]:
    """(transactions, reserves, transactions holding one reserve) so far, from GET /metrics."""
    text = app.test_client().get("/metrics").get_data(as_text=True)

    def value(pattern: str) -> float:
        found = re.search(rf"^inventory_reserves_per_transaction_{pattern} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    return value("count"), value("sum"), value(r'bucket\{le="1\.0"\}')


def test_64_concurrent_reserves_of_one_product_share_transactions_and_fail_alone(inventory: Flask) -> None:
    engine: sa.Engine = inventory.extensions["engine"]
    batcher: ReserveBatcher = inventory.extensions["reserve_batcher"]
    product = _new_product(inventory, 1000)
    before = _batch_sizes(inventory)
    run = uuid.uuid4().hex[:8]

    def reserve(n: int) -> int:
        # Among them, reserves that cannot be met: too many units, or a product that does not exist.
        asked = {5: (product, 5000), 9: ("NO-SUCH-PRODUCT", 1)}.get(n % 16, (product, 1))
        body = {"order_id": f"{run}-{n}", "product_id": asked[0], "quantity": asked[1]}
        return inventory.test_client().post("/inventory/reserve", json=body, headers=SERVICE).status_code

    # Hold the product's row (and, on SQLite, the writer) until every reserve is decided, queued or in a
    # transaction: the first transaction on the row waits, the others queue behind it, and the next one takes
    # them together.
    with ThreadPoolExecutor(CLIENTS) as pool, writing(engine) as hold:
        hold.execute(sa.select(storage.products).where(storage.products.c.product_id == product).with_for_update())
        answers = [pool.submit(reserve, n) for n in range(CLIENTS)]
        wait_until(
            lambda: batcher.pending + sum(a.done() for a in answers) >= CLIENTS,
            60,
            "every reserve queued or decided",
            interval=0.01,
        )
    statuses = [a.result(timeout=120) for a in answers]

    expected = [{5: 409, 9: 404}.get(n % 16, 201) for n in range(CLIENTS)]
    assert statuses == expected  # each refused alone; the others in its transaction are held
    held = expected.count(201)
    assert _stock(engine, product) == (1000 - held, held)
    transactions, reserves, alone = (after - b for after, b in zip(_batch_sizes(inventory), before, strict=True))
    assert reserves == CLIENTS
    assert alone < transactions < CLIENTS  # some transaction held more than one reserve
    _conserved(engine, product)


def test_batching_off_runs_each_reserve_alone(templates: Templates, tmp_path: Path) -> None:
    with _inventory_alone(templates, tmp_path, reserve_batch_max=1) as app:
        product = _new_product(app, 5)
        before = _batch_sizes(app)
        for n in range(3):
            body = {"order_id": f"off-{product}-{n}", "product_id": product, "quantity": 2}
            r = app.test_client().post("/inventory/reserve", json=body, headers=SERVICE)
            assert r.status_code == (201 if n < 2 else 409)
        after = _batch_sizes(app)
        assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (3, 3, 3)


def test_batches_of_carts_on_two_replicas_neither_deadlock_nor_oversell(inventory: Flask) -> None:
    """Two batchers on two engines (two replicas) reserve carts naming the same products in opposite orders."""
    engine: sa.Engine = inventory.extensions["engine"]
    other = engine_for(Settings(database_url=str(engine.url.render_as_string(hide_password=False)), port=0))
    a, b, c = (_new_product(inventory, 40) for _ in range(3))
    replicas = [inventory.extensions["reserve_batcher"], ReserveBatcher(other, 64)]
    carts = [[Line(a, 1), Line(b, 1), Line(c, 1)], [Line(c, 1), Line(b, 1), Line(a, 1)]]
    run = uuid.uuid4().hex[:8]

    def reserve(n: int) -> str:
        try:
            replicas[n % 2].reserve(f"{run}-{n}", carts[(n // 2) % 2])
            return "held"
        except InsufficientStock:
            return "short"

    try:
        with ThreadPoolExecutor(32) as pool:
            outcomes = list(pool.map(reserve, range(60)))
    finally:
        other.dispose()
    assert outcomes.count("held") == 40 and outcomes.count("short") == 20
    for product in (a, b, c):
        assert _stock(engine, product) == (0, 40)
    _conserved(engine, a, b, c)
