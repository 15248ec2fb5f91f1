"""Inventory Service: the catalogue, its stock, and reservations held for orders."""

from __future__ import annotations

from pathlib import Path

from flask_openapi3 import OpenAPI

from inventory_service.settings import Settings

SERVICE = "inventory-service"
MIGRATIONS = Path(__file__).parent / "migrations"
DESCRIPTION = """The product catalogue, its stock, and reservations that hold stock for orders.

Stock moves only through reservations keyed by order id: reserve holds units (`available` →
`reserved`), release returns them, commit sells them. Each is idempotent by order id, so the Order
Service may retry any of them. Reading the catalogue and checking stock are public; reservations need
the service token; creating, updating and restocking products need the admin token. Prices are JSON
numbers with two decimals."""


def create_app(settings: Settings | None = None) -> OpenAPI:
    from inventory_service.batching import ReserveBatcher
    from inventory_service.metrics import StockCollector, reserves_per_transaction
    from inventory_service.routes import inventory_blueprint
    from service_common.openapi import ADMIN_SCHEME, SERVICE_SCHEME
    from service_common.storage import engine_for, schema_checks
    from service_common.web import create_base_app

    settings = settings or Settings()
    engine = engine_for(settings)
    app = create_base_app(
        SERVICE,
        "Inventory Service",
        settings,
        schema_checks(engine, MIGRATIONS),
        [StockCollector(engine)],
        description=DESCRIPTION,
        security_schemes={"serviceToken": SERVICE_SCHEME, "adminToken": ADMIN_SCHEME},
    )
    batcher = ReserveBatcher(engine, settings.reserve_batch_max, reserves_per_transaction().observe)
    app.register_api(inventory_blueprint(engine, settings, batcher))
    app.extensions["engine"] = engine
    app.extensions["reserve_batcher"] = batcher
    return app
