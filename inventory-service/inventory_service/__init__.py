"""Inventory Service: the catalogue, its stock, and reservations held for orders."""

from __future__ import annotations

from pathlib import Path

from flask_openapi3 import OpenAPI

from inventory_service.settings import Settings

SERVICE = "inventory-service"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> OpenAPI:
    from inventory_service.metrics import StockCollector
    from inventory_service.routes import inventory_blueprint
    from service_common.storage import engine_for, schema_checks
    from service_common.web import create_base_app

    settings = settings or Settings()
    engine = engine_for(settings)
    app = create_base_app(
        SERVICE, "Inventory Service", settings, schema_checks(engine, MIGRATIONS), [StockCollector(engine)]
    )
    app.register_api(inventory_blueprint(engine, settings))
    app.extensions["engine"] = engine
    return app
