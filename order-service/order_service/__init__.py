"""Order Service: customer orders, each placed as a saga against the inventory service."""

from __future__ import annotations

from pathlib import Path

from flask_openapi3 import OpenAPI

from order_service.settings import Settings

SERVICE = "order-service"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_saga(settings: Settings):  # type: ignore[no-untyped-def]
    from order_service.inventory_client import InventoryClient
    from order_service.saga import OrderSaga
    from service_common.storage import engine_for

    return OrderSaga(engine_for(settings), InventoryClient(settings), settings)


def create_app(settings: Settings | None = None) -> OpenAPI:
    from order_service.routes import orders_blueprint
    from service_common.storage import schema_checks
    from service_common.web import create_base_app

    settings = settings or Settings()
    saga = create_saga(settings)
    app = create_base_app(SERVICE, "Order Service", settings, schema_checks(saga.engine, MIGRATIONS))
    app.register_api(orders_blueprint(saga, settings))
    app.extensions["saga"] = saga
    return app
