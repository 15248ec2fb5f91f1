"""Inventory HTTP API. Public: product reads and check. Service token: reserve, release, commit,
reservation reads. Admin token: create, update, restock."""

from __future__ import annotations

from decimal import Decimal

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.engine import Engine

from inventory_service import schemas, storage
from inventory_service.settings import Settings
from service_common.auth import require_token
from service_common.errors import ApiError, ErrorResponse, NotFound
from service_common.failpoints import FailPoints
from service_common.jsonio import json_response
from service_common.money import to_money
from service_common.parsing import is_identifier

_PRODUCTS = Tag(name="products", description="The catalogue and its stock")
_RESERVATIONS = Tag(name="reservations", description="Stock held for orders (service token)")

_E = ErrorResponse
_COMMON = {400: _E, 413: _E, 415: _E, 422: _E, 503: _E}


def _product_id(value: str) -> str:
    if not is_identifier(value):
        raise NotFound(f"Product {value[:64]} not found.", "product_not_found")
    return value


def _check_quantity(quantity: int, limit: int) -> None:
    if quantity > limit:
        raise ApiError(422, "validation_error", f"quantity: must be at most {limit}")


def _price(value: float | int) -> Decimal:
    exact = Decimal(str(value))
    if exact != to_money(exact):
        raise ApiError(422, "validation_error", "price: at most two decimal places")
    return to_money(exact)


def inventory_blueprint(engine: Engine, settings: Settings) -> APIBlueprint:
    bp = APIBlueprint("inventory", __name__, abp_responses=_COMMON)

    @bp.get("/inventory", tags=[_PRODUCTS], responses={200: schemas.ProductList})
    def list_products() -> Response:
        items = storage.list_products(engine)
        return json_response({"products": items, "total_products": len(items)})

    @bp.get("/inventory/<product_id>", tags=[_PRODUCTS], responses={200: schemas.Product, 404: _E})
    def get_product(path: schemas.ProductPath) -> Response:
        return json_response(storage.get_product(engine, _product_id(path.product_id)))

    @bp.post("/inventory/check", tags=[_PRODUCTS], responses={200: schemas.CheckResult, 404: _E})
    def check(body: schemas.CheckRequest) -> Response:
        _check_quantity(body.quantity, settings.max_quantity)
        return json_response(storage.check(engine, body.product_id, body.quantity))

    failpoints = FailPoints(settings.failpoints)

    @bp.post(
        "/inventory/reserve",
        tags=[_RESERVATIONS],
        responses={200: schemas.Reservation, 201: schemas.Reservation, 401: _E, 404: _E, 409: _E},
    )
    @require_token("service")
    def reserve(body: schemas.ReserveRequest) -> Response:
        _check_quantity(body.quantity, settings.max_quantity)
        result = storage.reserve(engine, body.order_id, body.product_id, body.quantity)
        failpoints.hit("inventory_after_reserve")  # committed, the answer not yet sent
        return json_response(result.reservation, 201 if result.created else 200)

    @bp.post("/inventory/release", tags=[_RESERVATIONS], responses={200: schemas.Reservation, 401: _E, 409: _E})
    @require_token("service")
    def release(body: schemas.ReleaseRequest) -> Response:
        return json_response(storage.release(engine, body.order_id, body.product_id, body.quantity))

    @bp.post("/inventory/commit", tags=[_RESERVATIONS], responses={200: schemas.Reservation, 401: _E, 404: _E, 409: _E})
    @require_token("service")
    def commit(body: schemas.CommitRequest) -> Response:
        return json_response(storage.commit(engine, body.order_id))

    @bp.get(
        "/inventory/reservations/<order_id>",
        tags=[_RESERVATIONS],
        responses={200: schemas.Reservation, 401: _E, 404: _E},
    )
    @require_token("service", "admin")
    def get_reservation(path: schemas.OrderPath) -> Response:
        if not is_identifier(path.order_id):
            raise NotFound(f"No reservation for order {path.order_id[:64]}.", "reservation_not_found")
        return json_response(storage.get_reservation(engine, path.order_id))

    @bp.get("/inventory/audit", tags=[_RESERVATIONS], responses={200: schemas.StockAudit, 401: _E})
    @require_token("service", "admin")
    def audit() -> Response:
        return json_response(
            {"products": storage.stock_report(engine), "reservations": storage.list_reservations(engine)}
        )

    @bp.post("/inventory", tags=[_PRODUCTS], responses={201: schemas.Product, 401: _E, 409: _E})
    @require_token("admin")
    def create_product(body: schemas.CreateProductRequest) -> Response:
        _check_quantity(body.quantity, settings.max_restock)
        product = storage.create_product(engine, body.product_id, body.name, _price(body.price), body.quantity)
        return json_response(product, 201)

    @bp.patch("/inventory/<product_id>", tags=[_PRODUCTS], responses={200: schemas.Product, 401: _E, 404: _E})
    @require_token("admin")
    def update_product(path: schemas.ProductPath, body: schemas.UpdateProductRequest) -> Response:
        changes: dict[str, object] = {}
        if body.name is not None:
            changes["name"] = body.name
        if body.price is not None:
            changes["price"] = _price(body.price)
        if not changes:
            raise ApiError(422, "validation_error", "body: give name or price")
        return json_response(storage.update_product(engine, _product_id(path.product_id), changes))

    @bp.post("/inventory/<product_id>/restock", tags=[_PRODUCTS], responses={200: schemas.Product, 401: _E, 404: _E})
    @require_token("admin")
    def restock(path: schemas.ProductPath, body: schemas.RestockRequest) -> Response:
        _check_quantity(body.quantity, settings.max_restock)
        return json_response(storage.restock(engine, _product_id(path.product_id), body.quantity))

    return bp
