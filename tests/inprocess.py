"""The fast layer: both services built in this process by their factories, create_app(settings), each on
its own database (a SQLite file; with TEST_DATABASE_URL also a PostgreSQL database), and spoken to through
Flask's test client. The order service's inventory client
reaches the inventory app through WsgiTransport instead of a socket, so a saga step runs the real code
of both services in one thread, in milliseconds.

Databases are migrated once per session into templates and copied for each test.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from werkzeug.test import TestResponse

import inventory_service
import order_service
from inventory_service.settings import Settings as InventorySettings
from local.processes import create_database, drop_database, server_url
from order_service.inventory_client import TransportError
from order_service.saga import OrderSaga
from order_service.settings import Settings as OrderSettings
from service_common.storage import run_migrations, writing

SERVICE_TOKEN = "fast-service-token"
ADMIN_TOKEN = "fast-admin-token"
INVENTORY_URL = "http://inventory.in-process"
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class WsgiAnswer:
    status: int
    data: bytes


@dataclass
class WsgiTransport:
    """The inventory client's transport into the inventory app's WSGI callable. `down` makes each call fail
    as a refused connection would; `lose_answers` lets the next n calls reach inventory and then fail
    as if the answer were lost on the way back."""

    app: Flask
    down: bool = False
    lose_answers: int = 0
    calls: list[str] = field(default_factory=list)

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict[str, str]) -> WsgiAnswer:
        path = url.removeprefix(INVENTORY_URL)
        self.calls.append(f"{method} {path}")
        if self.down:
            raise TransportError("connection refused (inventory is down)")
        response = self.app.test_client().open(path, method=method, data=body, headers=headers)
        if self.lose_answers:
            self.lose_answers -= 1
            raise TransportError("connection lost before the answer")
        return WsgiAnswer(response.status_code, response.get_data())


@dataclass
class Templates:
    """An order and an inventory database at head, copied for each test: SQLite files copied, or
    PostgreSQL databases created from them as templates (CREATE DATABASE … TEMPLATE, a file copy)."""

    kind: str
    workdir: Path
    server: str | None = None
    names: tuple[str, str] = ("orders", "inventory")

    @classmethod
    def migrated(cls, kind: str, workdir: Path) -> Templates:
        if kind == "sqlite":
            templates = cls(kind, workdir)
        else:
            prefix = f"t_fast_{uuid.uuid4().hex[:8]}"
            templates = cls(kind, workdir, server_url(os.environ["TEST_DATABASE_URL"]), (f"{prefix}_o", f"{prefix}_i"))
            for name in templates.names:
                create_database(templates.server or "", name)
        run_migrations(order_service.MIGRATIONS, templates.url(templates.names[0], workdir))
        run_migrations(inventory_service.MIGRATIONS, templates.url(templates.names[1], workdir))
        return templates

    def url(self, name: str, workdir: Path) -> str:
        return f"sqlite:///{workdir / name}.db" if self.server is None else f"{self.server}/{name}"

    @contextmanager
    def copies(self, workdir: Path) -> Iterator[tuple[str, str]]:
        """(order URL, inventory URL) of fresh copies, dropped afterwards."""
        if self.server is None:
            for name in self.names:
                shutil.copyfile(self.workdir / f"{name}.db", workdir / f"{name}.db")
            yield self.url(self.names[0], workdir), self.url(self.names[1], workdir)
            return
        copies = [f"{name}_{uuid.uuid4().hex[:8]}" for name in self.names]
        for copy, template in zip(copies, self.names, strict=True):
            create_database(self.server, copy, template=template)
        try:
            yield self.url(copies[0], workdir), self.url(copies[1], workdir)
        finally:
            for copy in copies:
                drop_database(self.server, copy)

    def drop(self) -> None:
        if self.server is not None:
            for name in self.names:
                drop_database(self.server, name)


@dataclass
class Services:
    """Both apps, their test clients, the order saga and the transport between them."""

    order: Flask
    inventory: Flask
    transport: WsgiTransport

    @property
    def saga(self) -> OrderSaga:
        saga: OrderSaga = self.order.extensions["saga"]
        return saga

    @property
    def order_engine(self) -> sa.Engine:
        return self.saga.engine

    # --- orders ----------------------------------------------------------------------------------------------

    def place(
        self, product_id: str, quantity: int, customer_id: str | None = None, headers: dict[str, str] | None = None
    ) -> TestResponse:
        body: dict[str, Any] = {"product_id": product_id, "quantity": quantity}
        if customer_id is not None:
            body["customer_id"] = customer_id
        return self.order.test_client().post("/orders", json=body, headers=headers or {})

    def cancel(self, order_id: str, headers: dict[str, str] | None = None) -> TestResponse:
        return self.order.test_client().delete(f"/orders/{order_id}", headers=headers or {})

    def fulfil(self, order_id: str) -> TestResponse:
        return self.order.test_client().post(f"/orders/{order_id}/fulfil", headers=ADMIN)

    def order_json(self, order_id: str) -> dict[str, Any]:
        r = self.order.test_client().get(f"/orders/{order_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json
        return body

    def audit(self) -> TestResponse:
        return self.order.test_client().get("/admin/audit", headers=ADMIN)

    # --- inventory -------------------------------------------------------------------------------------------

    def new_product(self, quantity: int, price: float = 10.0) -> str:
        product_id = f"T{uuid.uuid4().hex[:12]}"
        r = self.inventory.test_client().post(
            "/inventory",
            json={"product_id": product_id, "name": "Test product", "price": price, "quantity": quantity},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        return product_id

    def stock(self, product_id: str) -> tuple[int, int]:
        """(available, reserved)."""
        r = self.inventory.test_client().get(f"/inventory/{product_id}")
        assert r.status_code == 200, r.text
        return r.json["available_quantity"], r.json["reserved_quantity"]

    def reservation(self, order_id: str) -> TestResponse:
        return self.inventory.test_client().get(f"/inventory/reservations/{order_id}", headers=SERVICE)

    # --- the state a crash leaves behind ---------------------------------------------------------------------

    def age_orders(self, seconds: float) -> None:
        """Make every order look untouched for `seconds`, as after a crash long enough ago."""
        with writing(self.order_engine) as conn:
            conn.execute(sa.text("UPDATE orders SET updated_at = :t"), {"t": _ago(seconds)})

    def set_status(self, order_id: str, status: str) -> None:
        """Leave an order in a state a request crashed in, without the step that should follow."""
        number = int(order_id.removeprefix("ORD"))
        with writing(self.order_engine) as conn:
            conn.execute(sa.text("UPDATE orders SET status = :s WHERE id = :i"), {"s": status, "i": number})


def _ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


@contextmanager
def services(templates: Templates, workdir: Path, order_env: dict[str, Any] | None = None) -> Iterator[Services]:
    """Both services on fresh copies of the template databases; engines disposed afterwards."""
    with templates.copies(workdir) as (order_db, inventory_db):
        yield from _services(order_db, inventory_db, workdir, order_env)


def _services(order_db: str, inventory_db: str, workdir: Path, order_env: dict[str, Any] | None) -> Iterator[Services]:
    common: dict[str, Any] = {
        "service_token": SERVICE_TOKEN,
        "admin_token": ADMIN_TOKEN,
        "port": 0,
        "scratch_dir": workdir,
    }
    inventory = inventory_service.create_app(InventorySettings(**{**common, "database_url": inventory_db}))
    transport = WsgiTransport(inventory)
    order_settings = OrderSettings(
        **{**common, "database_url": order_db, "inventory_url": INVENTORY_URL, **(order_env or {})}
    )
    order = order_service.create_app(order_settings, inventory_transport=transport)
    try:
        yield Services(order, inventory, transport)
    finally:
        order.extensions["saga"].engine.dispose()
        inventory.extensions["engine"].dispose()
