"""Property tests of the inventory rules, on the storage layer against a real database: any sequence of
reserve (of one to three lines) / a batch of reserves in one transaction (the group commit) / release /
commit / restock / fold (retention folding the ledger into balance rows, in batches) keeps stock non-negative
and conserved per product, and matches the ledger."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory_service import MIGRATIONS, storage
from inventory_service.domain import Line
from service_common.domain import ConflictError, NotFoundError
from service_common.storage import run_migrations, utcnow
from tests.markers import ENGINES
from tests.topology import Database

ORDERS = [f"O{i}" for i in range(6)]
PRODUCTS = 3

# A cart: one to three lines, each of a distinct product (by index), in any order.
carts = st.lists(st.tuples(st.integers(0, PRODUCTS - 1), st.integers(1, 8)), min_size=1, max_size=3).map(
    lambda lines: list({p: (p, q) for p, q in lines}.values())
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.sampled_from(ORDERS), carts),
        # Several reserves decided in one transaction (any order may come twice), each answered on its own.
        st.tuples(
            st.just("batch"), st.lists(st.tuples(st.sampled_from(ORDERS), carts), min_size=1, max_size=5), st.none()
        ),
        st.tuples(st.just("release"), st.sampled_from(ORDERS), st.none()),
        st.tuples(st.just("commit"), st.sampled_from(ORDERS), st.none()),
        st.tuples(st.just("restock"), st.integers(0, PRODUCTS - 1), st.integers(1, 8)),
        st.tuples(st.just("fold"), st.none(), st.integers(1, 6)),
    ),
    max_size=25,
)


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    db = Database(request.param, Path(tmp_path_factory.mktemp("props")), "inventory")
    run_migrations(MIGRATIONS, db.url)
    engine = db.engine()
    yield engine
    engine.dispose()
    db.drop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.lists(st.integers(0, 20), min_size=PRODUCTS, max_size=PRODUCTS), ops=operations)
def test_any_sequence_keeps_stock_conserved_and_matches_the_ledger(
    engine: sa.Engine, initial: list[int], ops: list[tuple[str, Any, Any]]
) -> None:
    run = uuid.uuid4().hex[:12]
    products = [f"H{run}{i}" for i in range(PRODUCTS)]
    prefix = run + "-"
    for product, units in zip(products, initial, strict=True):
        storage.create_product(engine, product, "Property", Decimal("1.00"), units)
    restocked = dict.fromkeys(products, 0)
    for op, subject, value in ops:
        try:
            if op == "reserve":
                lines = [Line(products[p], q) for p, q in value]
                storage.reserve(engine, prefix + subject, lines)
            elif op == "batch":
                asks = [(prefix + order, [Line(products[p], q) for p, q in cart]) for order, cart in subject]
                for (order_id, lines), outcome in zip(asks, storage.reserve_many(engine, asks), strict=True):
                    try:
                        held = storage.settle(engine, order_id, lines, outcome).reservation
                        assert [(x.product_id, x.quantity) for x in held.lines] == [
                            (x.product_id, x.quantity) for x in lines
                        ]
                    except (NotFoundError, ConflictError):
                        pass  # refused alone: checked with the others below
            elif op == "release":
                storage.release(engine, prefix + subject)
            elif op == "commit":
                storage.commit(engine, prefix + subject)
            elif op == "fold":  # every row so far is old enough: all folded, `value` rows per transaction
                while storage.fold_ledger(engine, older_than=utcnow() + dt.timedelta(seconds=1), batch=value)[1]:
                    pass
            else:
                storage.restock(engine, products[subject], value)
                restocked[products[subject]] += value
        except (NotFoundError, ConflictError):
            pass  # a refusal changes nothing, which the checks below hold it to
        stock = storage.stock_report(engine)
        sold = _sold(engine, prefix)
        for product, units in zip(products, initial, strict=True):
            report = stock[product]
            assert report["available_quantity"] >= 0
            assert (
                report["available_quantity"] + report["reserved_quantity"] + sold.get(product, 0)
                == units + restocked[product]
            )
            assert report["reserved_quantity"] == report["held_reservations"]
            assert report["ledger_available"] == report["available_quantity"]
            assert report["ledger_reserved"] == report["reserved_quantity"]
            # The ledger's commits agree with the committed reservation lines.
            assert report["sold_quantity"] == sold.get(product, 0)


def _sold(engine: sa.Engine, prefix: str) -> dict[str, int]:
    """Units of each product in committed reservations (of this run's orders), line by line."""
    lines, reservations = storage.reservation_lines, storage.reservations
    query = (
        sa.select(lines.c.product_id, sa.func.sum(lines.c.quantity))
        .join(reservations, reservations.c.order_id == lines.c.order_id)
        .where(reservations.c.status == storage.COMMITTED, reservations.c.order_id.startswith(prefix))
        .group_by(lines.c.product_id)
    )
    with engine.connect() as conn:
        return {p: int(q) for p, q in conn.execute(query)}
