"""Order HTTP API: public as in the seed (or per customer, with CUSTOMER_AUTH=jwt); fulfilment and the
audit need the admin token."""

from __future__ import annotations

from typing import Any

from flask import Response, g, request
from flask_openapi3 import APIBlueprint, Tag

from order_service import schemas, storage
from order_service.audit import audit as run_audit
from order_service.customers import Caller, CustomerAuth
from order_service.saga import OrderRequest, OrderSaga, Outcome
from order_service.settings import Settings
from service_common.auth import require_token
from service_common.errors import ApiError, ErrorResponse, NotFound
from service_common.jsonio import json_response
from service_common.parsing import bodyless

_ORDERS = Tag(name="orders", description="Customer orders")
_ADMIN = Tag(name="admin", description="Operators (admin token)")
_E = ErrorResponse
# 401 on every operation: with CUSTOMER_AUTH=jwt a customer token is required.
_COMMON = {400: _E, 401: _E, 413: _E, 415: _E, 422: _E, 503: _E}


def _answer(outcome: Outcome) -> Response:
    if outcome.order_id:
        g.order_id = outcome.order_id
    return Response(outcome.body, status=outcome.status, headers=outcome.headers, mimetype="application/json")


def _number(order_id: str) -> int:
    number = storage.parse_order_id(order_id)
    if number is None:
        raise NotFound(f"Order {order_id[:64]} not found.", "order_not_found")
    g.order_id = order_id
    return number


def _caller() -> Caller:
    caller: Caller = g.caller
    return caller


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not (1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable ASCII characters.")
    return key


def orders_blueprint(saga: OrderSaga, settings: Settings) -> APIBlueprint:
    bp = APIBlueprint("orders", __name__, abp_responses=_COMMON)
    engine = saga.engine
    customers = CustomerAuth(settings)
    # A caller's 401 comes before their body is looked at.
    bp.before_request(lambda: setattr(g, "caller", customers.caller()))

    def visible_order(order_id: str) -> Any:
        """The order, if this caller may see it; others' orders are answered as not found."""
        row = storage.get_order(engine, _number(order_id))
        if row is None or not _caller().may_see(row.customer_id):
            raise NotFound(f"Order {order_id} not found.", "order_not_found")
        return row

    @bp.post("/orders", tags=[_ORDERS], responses={201: schemas.Order, 404: _E, 409: _E})
    def create_order(body: schemas.CreateOrderRequest, header: schemas.IdempotencyHeader) -> Response:
        if body.quantity > settings.max_quantity:
            raise ApiError(422, "validation_error", f"quantity: must be at most {settings.max_quantity}")
        key = _idempotency_key()
        caller = _caller()
        # An authenticated customer is who their token says, whatever the body claims.
        order = OrderRequest(body.product_id, body.quantity, caller.customer_id or body.customer_id)
        return _answer(saga.place(order, (caller.idempotency_scope, key) if key else None))

    @bp.get("/orders", tags=[_ORDERS], responses={200: schemas.OrderList})
    def list_orders(query: schemas.OrderQuery) -> Response:
        own = _caller().customer_id
        if own is not None and query.customer_id not in (None, own):
            return json_response({"orders": [], "total_count": 0})
        rows, total = storage.list_orders(
            engine, limit=query.limit, offset=query.offset, customer_id=own or query.customer_id, status=query.status
        )
        return json_response({"orders": [storage.order_json(r) for r in rows], "total_count": total})

    @bp.get("/orders/<order_id>", tags=[_ORDERS], responses={200: schemas.Order, 404: _E})
    def get_order(path: schemas.OrderPath) -> Response:
        return json_response(storage.order_json(visible_order(path.order_id)))

    @bp.delete(
        "/orders/<order_id>", tags=[_ORDERS], responses={200: schemas.Order, 202: schemas.Order, 404: _E, 409: _E}
    )
    def cancel_order(path: schemas.OrderPath) -> Response:
        return _answer(saga.cancel(visible_order(path.order_id).id))

    @bp.post(
        "/orders/<order_id>/fulfil",
        tags=[_ORDERS],
        responses={200: schemas.Order, 202: schemas.Order, 401: _E, 404: _E, 409: _E},
    )
    @require_token("admin")
    @bodyless
    def fulfil_order(path: schemas.OrderPath) -> Response:
        return _answer(saga.fulfil(_number(path.order_id)))

    @bp.get("/admin/audit", tags=[_ADMIN], responses={200: schemas.AuditReport, 401: _E, 409: schemas.AuditReport})
    @require_token("admin")
    def audit() -> Response:
        report = run_audit(saga)
        return json_response(report, 200 if report["consistent"] else 409)

    return bp
