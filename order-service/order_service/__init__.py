"""Order Service: customer orders, each placed as a saga against the inventory service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flask_openapi3 import OpenAPI

from order_service.settings import Settings

if TYPE_CHECKING:
    from order_service.inventory_client import Transport
    from order_service.saga import OrderSaga

SERVICE = "order-service"
MIGRATIONS = Path(__file__).parent / "migrations"
DESCRIPTION = """Customer orders. Each order is placed as a saga against the Inventory Service: a pending order
reserves stock, then is confirmed (201), or refused (404 unknown product, 409 `insufficient_stock`), or
failed while inventory is unreachable (503 with `Retry-After`).

States: `pending` → `confirmed` → `cancelling` → `cancelled`, or `confirmed` → `fulfilling` →
`fulfilled`; refused orders end `rejected`, or `failing` → `failed`. Prices are JSON numbers with two
decimals; times are UTC, RFC 3339.

Orders are public by default (CUSTOMER_AUTH=none). With CUSTOMER_AUTH=jwt every order operation needs a
customer's JWT (or the admin token), and a customer sees only their own orders. Fulfilment and the
audit need the admin token. The event feed (`GET /events`) needs the events token or the admin token.

The [operator console](/console) (admin token) shows stock, orders and the saga's health through this API."""


def create_saga(settings: Settings, inventory_transport: Transport | None = None) -> OrderSaga:
    """The saga over this settings' database and inventory (reached over HTTP unless a transport is given)."""
    from order_service.answers import HttpAnswers
    from order_service.inventory_client import InventoryClient
    from order_service.saga import OrderSaga
    from service_common.storage import engine_for

    inventory = InventoryClient(settings, inventory_transport)
    return OrderSaga(engine_for(settings), inventory, settings, HttpAnswers())


def create_app(settings: Settings | None = None, inventory_transport: Transport | None = None) -> OpenAPI:
    from order_service.console import console_api_blueprint, register_console
    from order_service.event_routes import EVENTS_SCHEME, events_blueprint
    from order_service.metrics import OutboxCollector, writes_per_transaction
    from order_service.routes import orders_blueprint
    from service_common.openapi import ADMIN_SCHEME, CUSTOMER_SCHEME
    from service_common.storage import group_commit, schema_checks
    from service_common.web import create_base_app

    settings = settings or Settings()
    saga = create_saga(settings, inventory_transport)
    # Requests' writes share commits; the recovery worker (create_saga alone) writes one at a time.
    group_commit(saga.engine, settings.write_batch_max, writes_per_transaction)
    schemes = {"adminToken": ADMIN_SCHEME, "eventsToken": EVENTS_SCHEME}
    if settings.customer_auth == "jwt":
        schemes["customerToken"] = CUSTOMER_SCHEME
    app = create_base_app(
        SERVICE,
        "Order Service",
        settings,
        schema_checks(saga.engine, MIGRATIONS),
        [OutboxCollector(saga.engine)],
        description=DESCRIPTION,
        security_schemes=schemes,
    )
    app.register_api(orders_blueprint(saga, settings))
    app.register_api(events_blueprint(saga.engine, settings))
    app.register_api(console_api_blueprint(saga.engine, saga.inventory, settings))
    register_console(app)
    app.extensions["saga"] = saga
    return app
