"""Property tests of the inventory rules, on the storage layer against a real database: any sequence of
reserve / release / commit / restock keeps stock non-negative and conserved, and matches the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory_service import MIGRATIONS, storage
from service_common.domain import ConflictError, NotFoundError
from service_common.storage import run_migrations
from tests.markers import ENGINES
from tests.topology import Database

ORDERS = [f"O{i}" for i in range(6)]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.sampled_from(ORDERS), st.integers(1, 8)),
        st.tuples(st.just("release"), st.sampled_from(ORDERS), st.none()),
        st.tuples(st.just("commit"), st.sampled_from(ORDERS), st.none()),
        st.tuples(st.just("restock"), st.none(), st.integers(1, 8)),
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
@given(initial=st.integers(0, 20), ops=operations)
def test_any_sequence_keeps_stock_conserved_and_matches_the_ledger(
    engine: sa.Engine, initial: int, ops: list[tuple[str, str | None, int | None]]
) -> None:
    product = f"H{uuid.uuid4().hex[:12]}"
    prefix = product + "-"
    storage.create_product(engine, product, "Property", Decimal("1.00"), initial)
    restocked = 0
    for op, order, quantity in ops:
        try:
            if op == "reserve":
                storage.reserve(engine, prefix + str(order), product, int(quantity or 0))
            elif op == "release":
                storage.release(engine, prefix + str(order))
            elif op == "commit":
                storage.commit(engine, prefix + str(order))
            else:
                storage.restock(engine, product, int(quantity or 0))
                restocked += int(quantity or 0)
        except (NotFoundError, ConflictError):
            pass  # a refusal changes nothing, which the checks below hold it to
        report = storage.stock_report(engine)[product]
        sold = _sold(engine, product)
        assert report["available_quantity"] >= 0
        assert report["available_quantity"] + report["reserved_quantity"] + sold == initial + restocked
        assert report["reserved_quantity"] == report["held_reservations"]
        assert report["ledger_available"] == report["available_quantity"]
        assert report["ledger_reserved"] == report["reserved_quantity"]
        assert report["sold_quantity"] == sold  # the ledger's commits agree with the committed reservations


def _sold(engine: sa.Engine, product: str) -> int:
    query = sa.select(sa.func.coalesce(sa.func.sum(storage.reservations.c.quantity), 0)).where(
        storage.reservations.c.product_id == product, storage.reservations.c.status == storage.COMMITTED
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
