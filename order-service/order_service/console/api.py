"""The admin API the operator console reads and acts through (admin token, JSON, in /openapi.json).

The console is served by the order service and talks to nothing else (same origin, strict CSP), so
what it needs from inventory comes through here: the catalogue with the ledger's sold units, and
restock / price change passed on to inventory's own admin endpoints with the caller's admin token.
Orders, cancel, fulfil and the audit are the order service's existing endpoints.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from order_service import storage
from order_service.console import schemas
from order_service.domain import UNFINISHED, OrderStatus, format_order_id
from order_service.inventory_client import InventoryClient, InventoryRefused, InventoryUnavailable
from order_service.retention import outbox_figures
from order_service.settings import Settings
from service_common.auth import bearer_token, require_token
from service_common.errors import ApiError
from service_common.jsonio import json_response
from service_common.openapi import ADMIN, errors, operation_id
from service_common.parsing import is_identifier
from service_common.storage import reading, rfc3339, utcnow

log = logging.getLogger(__name__)

_CONSOLE = Tag(name="console", description="What the operator console reads and does (admin token)")
_NO_PRODUCT = "No such product (`product_not_found`)."
_INVENTORY_DOWN = (
    "The database or the Inventory Service is unavailable (`database_unavailable`, `inventory_unavailable`); "
    "retry after `Retry-After` seconds."
)
# Inventory's answers that are the operator's to read, passed on as they are.
_PASSED_ON = frozenset({401, 404, 422})


def _inventory_unavailable(message: str) -> ApiError:
    return ApiError(503, "inventory_unavailable", message, headers={"Retry-After": "2"})


def _product_id(value: str) -> str:
    if not is_identifier(value):
        raise ApiError(404, "product_not_found", f"Product {value[:64]} not found.")
    return value


def _admin_token() -> str:
    token = bearer_token()
    assert token is not None  # require_token("admin") let the request in
    return token


def _refusal(exc: InventoryRefused) -> ApiError:
    if exc.status in _PASSED_ON:
        return ApiError(exc.status, exc.code, exc.message)
    # Anything else is a fault between the services, not the operator's: logged, answered as unavailable.
    log.error("inventory refused an admin call", extra={"fields": {"reason": str(exc)}})
    return _inventory_unavailable("The inventory service refused the call; retry shortly.")


def _outbox(engine: sa.Engine, settings: Settings) -> dict[str, Any]:
    figures = outbox_figures(engine)
    return {
        "broker": bool(settings.events_broker_url),
        "unpublished": figures.unpublished,
        "oldest_unpublished_age_seconds": round(figures.oldest_unpublished_age, 1),
        "kept": figures.kept,
        "retention_hours": settings.events_retention_hours,
    }


def saga_health(engine: sa.Engine, settings: Settings) -> dict[str, Any]:
    orders = storage.orders
    now = utcnow()
    with reading(engine) as conn:
        query = sa.select(orders.c.status, sa.func.count()).group_by(orders.c.status)
        counted: dict[str, int] = {status: count for status, count in conn.execute(query)}
        oldest = conn.execute(
            sa.select(orders.c.id, orders.c.status, orders.c.updated_at)
            .where(orders.c.status.in_([state.value for state in UNFINISHED]))
            .order_by(orders.c.updated_at, orders.c.id)
            .limit(1)
        ).first()
    counts = {state.value: int(counted.get(state.value, 0)) for state in OrderStatus}
    return {
        "counts": counts,
        "in_flight": sum(counts[state.value] for state in UNFINISHED),
        "oldest_in_flight": None
        if oldest is None
        else {
            "order_id": format_order_id(oldest.id),
            "status": oldest.status,
            "since": rfc3339(oldest.updated_at),
            "age_seconds": round(max((now - oldest.updated_at).total_seconds(), 0.0), 1),
        },
        "recovery_grace_seconds": settings.recovery_grace_seconds,
        "outbox": _outbox(engine, settings),
        "workers": [
            {
                "worker_id": row.worker_id,
                "started_at": rfc3339(row.started_at),
                "last_beat": rfc3339(row.beat_at),
                "age_seconds": round(max((now - row.beat_at).total_seconds(), 0.0), 1),
                "stale_after_seconds": row.stale_after_seconds,
                "fresh": (now - row.beat_at).total_seconds() <= row.stale_after_seconds,
            }
            for row in storage.worker_heartbeat_rows(engine)
        ],
        "checked_at": rfc3339(now),
    }


def console_api_blueprint(engine: sa.Engine, inventory: InventoryClient, settings: Settings) -> APIBlueprint:
    bp = APIBlueprint("console_api", __name__, operation_id_callback=operation_id)
    low = settings.console_low_stock

    @bp.get(
        "/admin/saga",
        tags=[_CONSOLE],
        security=ADMIN,
        responses={200: schemas.SagaHealth, **errors(auth=True)},
    )
    @require_token("admin")
    def saga_state() -> Response:
        """Health of the saga (admin)

        Orders in each state, how many are in flight (between two steps) and the one waiting longest.
        An in-flight order older than `recovery_grace_seconds` is the recovery worker's to finish.
        """
        return json_response(saga_health(engine, settings))

    @bp.get(
        "/admin/products",
        tags=[_CONSOLE],
        security=ADMIN,
        responses={200: schemas.StockList, **errors(auth=True, unavailable=_INVENTORY_DOWN)},
    )
    @require_token("admin")
    def stock() -> Response:
        """Stock of every product (admin)

        Inventory's catalogue with available, reserved and sold units (sold from inventory's ledger,
        through its audit report), each marked low when available is at or below CONSOLE_LOW_STOCK.
        """
        try:
            catalogue = inventory.products()["products"]
            figures = inventory.stock_report()["products"]
        except InventoryUnavailable as exc:
            raise _inventory_unavailable("The inventory service is unavailable; retry shortly.") from exc
        except InventoryRefused as exc:
            raise _refusal(exc) from exc
        items = [
            {
                **product,
                # A product created between the two reads is not in the report yet: nothing sold.
                "sold_quantity": figures.get(product["product_id"], {}).get("sold_quantity", 0),
                "low_stock": product["available_quantity"] <= low,
            }
            for product in catalogue
        ]
        return json_response({"products": items, "low_stock_threshold": low})

    @bp.post(
        "/admin/products/<product_id>/restock",
        tags=[_CONSOLE],
        security=ADMIN,
        responses={
            200: schemas.Product,
            **errors(
                {
                    404: _NO_PRODUCT,
                    422: "The body breaks the schema or the quantity is over inventory's MAX_RESTOCK "
                    "(`validation_error`).",
                    503: "The database or the Inventory Service is unavailable (`database_unavailable`, "
                    "`inventory_unavailable`). A restock is sent once, never retried: after a 503 read the "
                    "stock before restocking again.",
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("admin")
    def restock_product(path: schemas.ProductPath, body: schemas.RestockRequest) -> Response:
        """Restock a product (admin)

        Inventory's `POST /inventory/{product_id}/restock`, made with the caller's admin token.
        """
        product_id = _product_id(path.product_id)
        try:
            return json_response(inventory.restock(product_id, body.quantity, _admin_token()))
        except InventoryUnavailable as exc:
            raise _inventory_unavailable(
                "The inventory service did not confirm the restock; read the stock before restocking again."
            ) from exc
        except InventoryRefused as exc:
            raise _refusal(exc) from exc

    @bp.patch(
        "/admin/products/<product_id>",
        tags=[_CONSOLE],
        security=ADMIN,
        responses={
            200: schemas.Product,
            **errors(
                {
                    404: _NO_PRODUCT,
                    422: "The body breaks the schema, gives neither name nor price, or the price has more "
                    "than two decimals (`validation_error`).",
                    503: _INVENTORY_DOWN,
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("admin")
    def update_product(path: schemas.ProductPath, body: schemas.UpdateProductRequest) -> Response:
        """Rename or reprice a product (admin)

        Inventory's `PATCH /inventory/{product_id}`, made with the caller's admin token. Orders already
        placed keep their price.
        """
        product_id = _product_id(path.product_id)
        changes = body.model_dump(exclude_none=True)
        if not changes:
            raise ApiError(422, "validation_error", "body: give name or price")
        try:
            return json_response(inventory.update_product(product_id, changes, _admin_token()))
        except InventoryUnavailable as exc:
            raise _inventory_unavailable("The inventory service is unavailable; retry shortly.") from exc
        except InventoryRefused as exc:
            raise _refusal(exc) from exc

    return bp
