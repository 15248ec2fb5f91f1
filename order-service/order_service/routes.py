"""Order HTTP API: public as in the seed (or per customer, with CUSTOMER_AUTH=jwt); fulfilment and the
audit need the admin token."""

from __future__ import annotations

from flask import Response, g, request
from flask_openapi3 import APIBlueprint, Tag

from order_service import answers, schemas, storage
from order_service.audit import audit as run_audit
from order_service.customers import Caller, CustomerAuth
from order_service.domain import Order, OrderNotFound, parse_order_id
from order_service.saga import OrderRequest, OrderSaga, Placement, Step
from order_service.settings import Settings
from service_common.auth import require_token
from service_common.errors import ApiError
from service_common.jsonio import json_response
from service_common.openapi import ADMIN, described, errors, operation_id
from service_common.parsing import bodyless

_ORDERS = Tag(name="orders", description="Customer orders")
_ADMIN = Tag(name="admin", description="Operators (admin token)")

_NO_ORDER = "No such order (`order_not_found`); with CUSTOMER_AUTH=jwt, also another customer's order."
_PENDING = described("Order", "The order, while inventory has not confirmed the step yet; the worker finishes it.")


def _placed(placement: Placement) -> Response:
    g.order_id = placement.order_id
    return answers.response(placement.answer)


def _stepped(step: Step) -> Response:
    """200 with the order once final; 202 while inventory's step is still owed (the worker delivers it)."""
    g.order_id = step.order.order_id
    return json_response(schemas.order_json(step.order), 200 if step.done else 202)


def _number(order_id: str) -> int:
    number = parse_order_id(order_id)
    if number is None:
        raise OrderNotFound(order_id[:64])
    g.order_id = order_id
    return number


def _caller() -> Caller:
    caller: Caller = g.caller
    return caller


def _idempotency_key(key: str | None) -> str | None:
    """The Idempotency-Key header, checked after the body (400, not the header model's 422)."""
    if key is None:
        return None
    if not (1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable ASCII characters.")
    return key


def orders_blueprint(saga: OrderSaga, settings: Settings) -> APIBlueprint:
    bp = APIBlueprint("orders", __name__, operation_id_callback=operation_id)
    engine = saga.engine
    customers = CustomerAuth(settings)
    # With CUSTOMER_AUTH=jwt every order operation needs a customer's JWT or the admin token (401
    # otherwise); by default (none) they are public and take no token.
    customer: list[dict[str, list[str]]] | None = [{"customerToken": []}, *ADMIN] if customers.enabled else None
    unauthorized = {401: "The customer token is missing or not valid (`unauthorized`)."} if customers.enabled else {}
    # A caller's 401 comes before their body is looked at.
    bp.before_request(lambda: setattr(g, "caller", customers.caller()))

    def visible_order(order_id: str) -> Order:
        """The order, if this caller may see it; others' orders are answered as not found."""
        row = storage.get_order(engine, _number(order_id))
        if row is None or not _caller().may_see(row.customer_id):
            raise OrderNotFound(order_id)
        return row

    @bp.post(
        "/orders",
        tags=[_ORDERS],
        security=customer,
        openapi_extensions={"parameters": schemas.header_parameters(schemas.IdempotencyHeader)},
        responses={
            201: schemas.Order,
            **errors(
                {
                    **unauthorized,
                    400: "The body is not a JSON object (`invalid_json`), or the Idempotency-Key is not 1-255 "
                    "printable ASCII characters (`invalid_idempotency_key`).",
                    404: "A product is unknown (`product_not_found`, naming it): the order is rejected and "
                    "no stock moves.",
                    409: "A line is short (`insufficient_stock`, with `details`: each short line's `product_id`, "
                    "`requested` and `available`): the order is rejected and no stock moves. Or a request with "
                    "this Idempotency-Key is still running after 5 s (`in_progress`, with `Retry-After`).",
                    422: "The body breaks the schema: both shapes or neither, no lines, a product twice, more "
                    "than MAX_LINES lines or MAX_QUANTITY units in a line (`validation_error`); or the "
                    "Idempotency-Key was used with another body (`idempotency_key_reused`).",
                    503: "Inventory is unreachable (`inventory_unavailable`: the order failed and the key is "
                    "let go) or the database is (`database_unavailable`); retry after `Retry-After` seconds.",
                },
                body=True,
            ),
        },
    )
    def create_order(body: schemas.CreateOrderRequest) -> Response:
        """Place an order

        The body is a cart (`items`: each product once, in the order the order keeps) or, as before
        carts, one `product_id` and `quantity` (a one-line cart). Reserves every line in the Inventory
        Service, all or nothing, then answers the confirmed order with its prices.
        With an Idempotency-Key, a retry with the same body is answered the original status and body
        without reserving again; keys are remembered for 24 h.
        """
        key = _idempotency_key(request.headers.get("Idempotency-Key"))
        caller = _caller()
        # An authenticated customer is who their token says, whatever the body claims.
        order = OrderRequest(body.lines(), caller.customer_id or body.customer_id)
        return _placed(saga.place(order, (caller.idempotency_scope, key) if key else None))

    @bp.get(
        "/orders",
        tags=[_ORDERS],
        security=customer,
        responses={
            200: schemas.OrderList,
            **errors({**unauthorized, 422: "A query parameter breaks the schema (`validation_error`)."}),
        },
    )
    def list_orders(query: schemas.OrderQuery) -> Response:
        """List orders

        Newest first, a page at a time. Refused orders (rejected, failing, failed) are listed only when
        asked for with `status`. With CUSTOMER_AUTH=jwt a customer sees only their own.
        """
        own = _caller().customer_id
        if own is not None and query.customer_id not in (None, own):
            return json_response({"orders": [], "total_count": 0})
        rows, total = storage.list_orders(
            engine, limit=query.limit, offset=query.offset, customer_id=own or query.customer_id, status=query.status
        )
        return json_response({"orders": [schemas.order_json(r) for r in rows], "total_count": total})

    @bp.get(
        "/orders/<order_id>",
        tags=[_ORDERS],
        security=customer,
        responses={200: schemas.Order, **errors({**unauthorized, 404: _NO_ORDER})},
    )
    def get_order(path: schemas.OrderPath) -> Response:
        """Read an order"""
        return json_response(schemas.order_json(visible_order(path.order_id)))

    @bp.delete(
        "/orders/<order_id>",
        tags=[_ORDERS],
        security=customer,
        responses={
            200: schemas.Order,
            202: _PENDING,
            **errors(
                {
                    **unauthorized,
                    404: _NO_ORDER,
                    409: "The order is not confirmed, so it cannot be cancelled (`not_cancellable`).",
                },
                stray_body=True,
            ),
        },
    )
    def cancel_order(path: schemas.OrderPath) -> Response:
        """Cancel an order

        A confirmed order's stock is released and the order answered `cancelled` (200); while inventory
        has not confirmed the release it is `cancelling` (202). Cancelling again answers the same. The
        order stays readable afterwards: a cancelled order is kept, not deleted.
        """
        return _stepped(saga.cancel(visible_order(path.order_id).id))

    @bp.post(
        "/orders/<order_id>/fulfil",
        tags=[_ORDERS],
        security=ADMIN,
        responses={
            200: schemas.Order,
            202: _PENDING,
            **errors(
                {
                    404: "No such order (`order_not_found`).",
                    409: "The order is not confirmed, so it cannot be fulfilled (`not_fulfillable`).",
                },
                stray_body=True,
                auth=True,
            ),
        },
    )
    @require_token("admin")
    @bodyless
    def fulfil_order(path: schemas.OrderPath) -> Response:
        """Fulfil an order (admin)

        The order's reserved stock is committed as sold and the order answered `fulfilled` (200); while
        inventory has not confirmed the commit it is `fulfilling` (202). Fulfilling again answers the same.
        Takes no body.
        """
        return _stepped(saga.fulfil(_number(path.order_id)))

    @bp.get(
        "/admin/audit",
        tags=[_ADMIN],
        security=ADMIN,
        responses={
            200: schemas.AuditReport,
            409: described("AuditReport", "Discrepancies found (seen twice, a moment apart): the same report."),
            **errors(
                auth=True,
                unavailable="The database or the Inventory Service is unavailable (`database_unavailable`, "
                "`inventory_unavailable`); retry after `Retry-After` seconds.",
            ),
        },
    )
    @require_token("admin")
    def audit() -> Response:
        """Audit orders against inventory (admin)

        Compares every settled order with its reservation, and each product's stock with its ledger and
        held reservations. 200 when consistent; 409 with the same report when discrepancies are found
        (confirmed twice, a moment apart). Orders changed within the recovery grace period are skipped.
        """
        report = run_audit(saga)
        return json_response(report, 200 if report["consistent"] else 409)

    return bp
