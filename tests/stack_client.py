"""A small client of a running stack's two APIs (real HTTP), with the tokens each caller would have."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import sqlalchemy as sa

from order_service.domain import OrderStatus
from service_common.storage import reading
from tests.topology import ADMIN_TOKEN, SERVICE_TOKEN, Stack

READ_RETRY_SECONDS = 10.0


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

    def place_cart(self, lines: list[tuple[str, int]], customer_id: str | None = None, **kw: Any) -> requests.Response:
        body: dict[str, Any] = {"items": [{"product_id": p, "quantity": q} for p, q in lines]}
        if customer_id is not None:
            body["customer_id"] = customer_id
        return requests.post(f"{self.order_url}/orders", json=body, timeout=30, **kw)

    def cancel(self, order_id: str) -> requests.Response:
        return requests.delete(f"{self.order_url}/orders/{order_id}", timeout=30)

    def read(self, url: str, **kw: Any) -> requests.Response:
        """GET, asked again after a 503 (as its Retry-After says to) for up to READ_RETRY_SECONDS: just
        after a database restart, a worker's first read on a pooled connection the restart closed is
        answered 503 while the pool reconnects (service_common.storage._ping_when_idle)."""
        deadline = time.monotonic() + READ_RETRY_SECONDS
        while True:
            r = self.http.get(url, timeout=10, **kw)
            if r.status_code != 503 or time.monotonic() >= deadline:
                return r
            time.sleep(0.2)

    def order(self, order_id: str) -> dict[str, Any]:
        r = self.read(f"{self.order_url}/orders/{order_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def orders(self, **params: Any) -> dict[str, Any]:
        r = self.read(f"{self.order_url}/orders", params=params)
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
        r = self.read(f"{self.inventory_url}/inventory/{product_id}")
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
