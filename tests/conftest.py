"""Fixtures shared by the integration tests: real services as real processes, on SQLite and (when
TEST_DATABASE_URL is set) PostgreSQL, and a small client that speaks their API."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from order_service.domain import OrderStatus
from service_common.storage import reading
from tests.topology import ADMIN_TOKEN, SERVICE_TOKEN, Stack, stack

ENGINES = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL tests need TEST_DATABASE_URL"
        ),
    ),
]


def requires_program(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed")


class Api:
    """HTTP against a running stack, with the tokens each caller would have."""

    def __init__(self, order_url: str, inventory_url: str, order_db: sa.Engine | None = None) -> None:
        self.order_url = order_url
        self.inventory_url = inventory_url
        self.http = requests.Session()
        self._order_db = order_db

    @classmethod
    def of(cls, stack: Stack) -> Api:
        return cls(stack.order.url, stack.inventory.url, _order_engine(stack))

    def order_count(self) -> int:
        """Every order in every state, refused ones included (they are left out of the default list)."""
        if self._order_db is not None:  # one query instead of one request per state
            with reading(self._order_db) as conn:
                return int(conn.exec_driver_sql("SELECT count(*) FROM orders").scalar_one())
        return sum(self.orders(status=state, limit=1)["total_count"] for state in OrderStatus)

    # orders
    def place(self, product_id: str, quantity: int, customer_id: str | None = None, **kw: Any) -> requests.Response:
        body: dict[str, Any] = {"product_id": product_id, "quantity": quantity}
        if customer_id is not None:
            body["customer_id"] = customer_id
        return requests.post(f"{self.order_url}/orders", json=body, timeout=30, **kw)

    def cancel(self, order_id: str) -> requests.Response:
        return requests.delete(f"{self.order_url}/orders/{order_id}", timeout=30)

    def order(self, order_id: str) -> dict[str, Any]:
        r = self.http.get(f"{self.order_url}/orders/{order_id}", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def orders(self, **params: Any) -> dict[str, Any]:
        r = self.http.get(f"{self.order_url}/orders", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def fulfil(self, order_id: str) -> requests.Response:
        return requests.post(f"{self.order_url}/orders/{order_id}/fulfil", headers=self.admin, timeout=30)

    # inventory
    @property
    def service(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SERVICE_TOKEN}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def product(self, product_id: str) -> dict[str, Any]:
        r = self.http.get(f"{self.inventory_url}/inventory/{product_id}", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def new_product(self, quantity: int, price: float = 10.0) -> str:
        product_id = f"T{uuid.uuid4().hex[:12]}"
        r = self.http.post(
            f"{self.inventory_url}/inventory",
            json={"product_id": product_id, "name": "Test product", "price": price, "quantity": quantity},
            headers=self.admin,
            timeout=10,
        )
        assert r.status_code == 201, r.text
        return product_id

    def inventory_post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        return self.http.post(f"{self.inventory_url}{path}", json=body, headers=headers or self.service, timeout=10)

    def reservation(self, order_id: str) -> requests.Response:
        return self.http.get(
            f"{self.inventory_url}/inventory/reservations/{order_id}", headers=self.service, timeout=10
        )


_engines: dict[str, sa.Engine] = {}


def _order_engine(stack: Stack) -> sa.Engine:
    if stack.order_db.url not in _engines:
        _engines[stack.order_db.url] = stack.order_db.engine()
    return _engines[stack.order_db.url]


def parallel(n: int, fn: Any, *args: Any) -> list[Any]:
    """Call fn(i, *args) n times at once, from n threads."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda i: fn(i, *args), range(n)))


@pytest.fixture(scope="module", params=ENGINES)
def services(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Both services (and the recovery worker), shared by the tests of one module on one engine."""
    workdir = tmp_path_factory.mktemp(f"stack-{request.param}")
    with stack(Path(workdir), request.param, with_worker=True) as s:
        yield s


@pytest.fixture
def api(services: Stack) -> Api:
    return Api.of(services)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (FORBID_SKIPS=1) every program and database is installed, so a skipped test is a failure."""
    if not os.environ.get("FORBID_SKIPS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        if reporter:
            reporter.write_line(f"FORBID_SKIPS: {skipped} test(s) skipped; in CI nothing may skip", red=True)
        session.exitstatus = 1
