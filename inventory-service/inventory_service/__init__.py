"""Inventory Service: the catalogue, its stock, and reservations held for orders."""

from __future__ import annotations

from pathlib import Path

from flask_openapi3 import OpenAPI

from inventory_service.settings import Settings

SERVICE = "inventory-service"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> OpenAPI:
    from inventory_service.routes import inventory_blueprint
    from service_common.storage import create_db_engine, schema_checks
    from service_common.web import create_base_app

    settings = settings or Settings()
    engine = create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        statement_timeout_ms=settings.statement_timeout_ms,
        lock_timeout_ms=settings.lock_timeout_ms,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    app = create_base_app(SERVICE, "Inventory Service", settings, schema_checks(engine, MIGRATIONS))
    app.register_api(inventory_blueprint(engine, settings))
    app.extensions["engine"] = engine
    return app
