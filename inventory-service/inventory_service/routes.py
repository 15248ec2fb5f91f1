"""Inventory HTTP API. Public: product reads and check. Service token: reserve, release, commit,
reservation reads. Admin token: create, update, restock."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.engine import Engine

from inventory_service import schemas, storage
from inventory_service.batching import ReserveBatcher
from inventory_service.domain import ProductNotFound, ReservationNotFound
from inventory_service.settings import Settings
from service_common.auth import require_token
from service_common.domain import InvalidError
from service_common.failpoints import FailPoints
from service_common.jsonio import json_response
from service_common.money import to_money
from service_common.openapi import ADMIN, SERVICE, SERVICE_OR_ADMIN, described, errors, operation_id
from service_common.parsing import bodyless, is_identifier
from service_common.storage import utcnow

_PRODUCTS = Tag(name="products", description="The catalogue and its stock")
_RESERVATIONS = Tag(name="reservations", description="Stock held for orders (service token)")

_NO_PRODUCT = "No such product (`product_not_found`)."
_NO_RESERVATION = "No reservation for this order (`reservation_not_found`)."
_TOO_MANY = "The body breaks the schema or asks for more than MAX_QUANTITY (`validation_error`)."


# Fixed paths under /inventory/ that GET /inventory/{product_id} could never reach for such a product.
_SHADOWED_IDS = frozenset({"audit"})


def _product_id(value: str) -> str:
    if not is_identifier(value):
        raise ProductNotFound(value[:64])
    return value


def _price(value: float | int) -> Decimal:
    exact = Decimal(str(value))
    if exact != to_money(exact):
        raise InvalidError("price: at most two decimal places")
    return to_money(exact)


def inventory_blueprint(engine: Engine, settings: Settings, batcher: ReserveBatcher) -> APIBlueprint:
    bp = APIBlueprint("inventory", __name__, operation_id_callback=operation_id)

    @bp.get("/inventory", tags=[_PRODUCTS], responses={200: schemas.ProductList, **errors()})
    def list_products() -> Response:
        """List the catalogue

        Every product with its price and stock, by product id.
        """
        items = [schemas.product_json(p) for p in storage.list_products(engine)]
        return json_response({"products": items, "total_products": len(items)})

    @bp.get("/inventory/<product_id>", tags=[_PRODUCTS], responses={200: schemas.Product, **errors({404: _NO_PRODUCT})})
    def get_product(path: schemas.ProductPath) -> Response:
        """Read a product"""
        return json_response(schemas.product_json(storage.get_product(engine, _product_id(path.product_id))))

    @bp.post(
        "/inventory/check",
        tags=[_PRODUCTS],
        responses={
            200: schemas.CheckAnswer,
            **errors({404: _NO_PRODUCT, 422: _TOO_MANY}, body=True),
        },
    )
    def check(body: schemas.CheckRequest) -> Response:
        """Check stock

        Whether `quantity` units are available now, and at what price; or, with `items`, the same for each
        line of a cart. Holds nothing.
        """
        results = storage.check(engine, body.lines())
        if body.items is None:
            return json_response(schemas.check_json(results[0]))
        return json_response(schemas.cart_check_json(results))

    failpoints = FailPoints(settings.failpoints)

    @bp.post(
        "/inventory/reserve",
        tags=[_RESERVATIONS],
        security=SERVICE,
        responses={
            200: described("Reservation", "The same reserve again: the reservation it made."),
            201: schemas.Reservation,
            **errors(
                {
                    404: _NO_PRODUCT,
                    409: "A line is short (`insufficient_stock`, with `details`: each short line's "
                    "`product_id`, `requested`, `available`; a one-product body also `available_quantity` and "
                    "`requested_quantity`); the order was released and can never hold stock (`released`); or "
                    "the order already holds other lines (`reservation_mismatch`).",
                    422: _TOO_MANY,
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("service")
    def reserve(body: schemas.ReserveRequest) -> Response:
        """Reserve stock for an order (service)

        Moves each line's units (`items`, or one `product_id` and `quantity`) from available to reserved for
        `order_id`, at the current prices, all or nothing, once: a retry with the same order and lines
        answers the reservation again (200). An unknown product is answered 404 naming it; nothing moves.
        """
        result = batcher.reserve(body.order_id, body.lines())
        failpoints.hit("inventory_after_reserve")  # committed, the answer not yet sent
        return json_response(schemas.reservation_json(result.reservation), 201 if result.created else 200)

    @bp.post(
        "/inventory/reserve/batch",
        tags=[_RESERVATIONS],
        security=SERVICE,
        responses={
            200: schemas.ReserveBatchAnswer,
            **errors(
                {422: "The body breaks the schema: 1 to 64 reserve bodies (`validation_error`)."}, body=True, auth=True
            ),
        },
    )
    @require_token("service")
    def reserve_batch(body: schemas.ReserveBatchRequest) -> Response:
        """Reserve stock for several orders at once (service)

        Each of `reservations` is a reserve's body and is decided as `POST /inventory/reserve` decides it, on
        its own: its answer's status and reservation, or its error, in `results`, in the order sent. They
        share one transaction (the group commit's, with any reserve that arrives meanwhile), so the Order
        Service sends the reserves of orders placed at the same moment as one call.
        """
        asks = [(each.order_id, each.lines()) for each in body.reservations]
        answers = batcher.reserve_all(asks)
        failpoints.hit("inventory_after_reserve")  # committed, the answers not yet sent
        return json_response({"results": [schemas.reserve_outcome_json(answer) for answer in answers]})

    @bp.post(
        "/inventory/release",
        tags=[_RESERVATIONS],
        security=SERVICE,
        responses={
            200: schemas.Reservation,
            **errors(
                {
                    409: "The order holds another product or quantity than the one given, or several lines "
                    "(`reservation_mismatch`), or its stock was sold (`committed`).",
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("service")
    def release(body: schemas.ReleaseRequest) -> Response:
        """Release an order's stock (service)

        Returns every line of a held reservation to available, exactly once; releasing again answers the released
        reservation. An order that holds nothing is left a tombstone (`product_id` null), so a reserve still
        in flight for it can never hold stock later.
        """
        reservation = storage.release(engine, body.order_id, body.product_id, body.quantity)
        return json_response(schemas.reservation_json(reservation))

    @bp.post(
        "/inventory/commit",
        tags=[_RESERVATIONS],
        security=SERVICE,
        responses={
            200: schemas.Reservation,
            **errors(
                {
                    404: _NO_RESERVATION,
                    409: "The order's reservation was released; there is nothing to commit (`released`).",
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("service")
    def commit(body: schemas.CommitRequest) -> Response:
        """Commit an order's stock as sold (service)

        Every line's held units leave reserved for good. Committing again answers the committed reservation.
        """
        return json_response(schemas.reservation_json(storage.commit(engine, body.order_id)))

    @bp.get(
        "/inventory/reservations/<order_id>",
        tags=[_RESERVATIONS],
        security=SERVICE_OR_ADMIN,
        responses={200: schemas.Reservation, **errors({404: _NO_RESERVATION}, auth=True)},
    )
    @require_token("service", "admin")
    def get_reservation(path: schemas.OrderPath) -> Response:
        """Read an order's reservation (service or admin)"""
        if not is_identifier(path.order_id):
            raise ReservationNotFound(path.order_id[:64])
        return json_response(schemas.reservation_json(storage.get_reservation(engine, path.order_id)))

    @bp.get(
        "/inventory/audit",
        tags=[_RESERVATIONS],
        security=SERVICE_OR_ADMIN,
        responses={200: schemas.StockAudit, **errors(auth=True)},
    )
    @require_token("service", "admin")
    def audit() -> Response:
        """Stock report for the audit (service or admin)

        Per product: the stock columns, the ledger's sums and the units in held reservations; and every
        reservation that holds or held stock. The Order Service's audit compares them with its orders.
        """
        reservations = [schemas.reservation_summary_json(r) for r in storage.list_reservations(engine)]
        return json_response({"products": storage.stock_report(engine), "reservations": reservations})

    @bp.post(
        "/inventory/ledger/fold",
        tags=[_RESERVATIONS],
        security=SERVICE_OR_ADMIN,
        responses={200: schemas.LedgerFold, **errors(stray_body=True, auth=True)},
    )
    @require_token("service", "admin")
    @bodyless
    def fold_ledger() -> Response:
        """Fold old ledger rows (service or admin)

        Retention: up to LEDGER_FOLD_BATCH stock ledger rows older than LEDGER_RETENTION_HOURS become part
        of their product's one `balance` row, in one transaction, so every sum over the ledger stays the same.
        `more` says whether older rows are left. The Order Service's recovery worker calls it. Takes no body.
        """
        older_than = utcnow() - dt.timedelta(hours=settings.ledger_retention_hours)
        folded, more = storage.fold_ledger(engine, older_than=older_than, batch=settings.ledger_fold_batch)
        return json_response({"folded_rows": folded, "more": more})

    @bp.post(
        "/inventory",
        tags=[_PRODUCTS],
        security=ADMIN,
        responses={
            201: schemas.Product,
            **errors(
                {
                    409: "A product with this id exists (`product_exists`).",
                    422: "The body breaks the schema, the price has more than two decimals, or the quantity is "
                    "over MAX_RESTOCK (`validation_error`).",
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("admin")
    def create_product(body: schemas.CreateProductRequest) -> Response:
        """Create a product (admin)"""
        if body.product_id in _SHADOWED_IDS:
            raise InvalidError(f"product_id: {body.product_id!r} is a reserved path segment")
        product = storage.create_product(engine, body.product_id, body.name, _price(body.price), body.quantity)
        return json_response(schemas.product_json(product), 201)

    @bp.patch(
        "/inventory/<product_id>",
        tags=[_PRODUCTS],
        security=ADMIN,
        responses={
            200: schemas.Product,
            **errors(
                {
                    404: _NO_PRODUCT,
                    422: "The body breaks the schema, gives neither name nor price, or the price has more than "
                    "two decimals (`validation_error`).",
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("admin")
    def update_product(path: schemas.ProductPath, body: schemas.UpdateProductRequest) -> Response:
        """Rename or reprice a product (admin)

        Never changes stock. Orders already placed keep the price they were placed at.
        """
        if body.name is None and body.price is None:
            raise InvalidError("body: give name or price")
        price = _price(body.price) if body.price is not None else None
        product = storage.update_product(engine, _product_id(path.product_id), name=body.name, price=price)
        return json_response(schemas.product_json(product))

    @bp.post(
        "/inventory/<product_id>/restock",
        tags=[_PRODUCTS],
        security=ADMIN,
        responses={
            200: schemas.Product,
            **errors(
                {
                    404: _NO_PRODUCT,
                    422: "The body breaks the schema or the quantity is over MAX_RESTOCK (`validation_error`).",
                },
                body=True,
                auth=True,
            ),
        },
    )
    @require_token("admin")
    def restock(path: schemas.ProductPath, body: schemas.RestockRequest) -> Response:
        """Add stock to a product (admin)"""
        product = storage.restock(engine, _product_id(path.product_id), body.quantity)
        return json_response(schemas.product_json(product))

    return bp
