"""Request and response models: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, model_validator

from inventory_service import domain
from service_common.domain import DomainError
from service_common.errors import ErrorDetail, domain_error_json, domain_status
from service_common.limits import AtMost, LimitedModel
from service_common.lines import check_shape, document_shapes, refuse_nulls
from service_common.money import Money, MoneyIn
from service_common.openapi import Timestamp
from service_common.parsing import Identifier
from service_common.storage import rfc3339


class Strict(LimitedModel):
    # JSON types exactly as sent (no "2" for 2, no true for 1); unknown fields refused.
    model_config = ConfigDict(strict=True, extra="forbid")


Quantity = StrictInt
# What one request may move, and what one restock (or a new product) may add: from the settings.
Requested = Annotated[StrictInt, AtMost("max_quantity")]
Restocked = Annotated[StrictInt, AtMost("max_restock")]


# Path ids are any string: one that names nothing is answered 404, not 422.
class ProductPath(BaseModel):
    product_id: str = Field(description="Product id.", json_schema_extra={"example": "P001"})


class OrderPath(BaseModel):
    order_id: str = Field(description="Order id the reservation is for.", json_schema_extra={"example": "ORD00000001"})


class ItemRequest(Strict):
    """One line of an order: a product, at most once per order, and its quantity."""

    product_id: Identifier
    quantity: Requested = Field(ge=1, description="Units; at most MAX_QUANTITY.")


class _Lines(Strict):
    """Either one product (`product_id`, `quantity`: the shape from before carts) or `items`, never both."""

    product_id: Identifier | None = Field(None, description="One product (with `quantity`), or give `items`.")
    quantity: Annotated[StrictInt | None, AtMost("max_quantity")] = Field(
        None, ge=1, description="Units; at most MAX_QUANTITY."
    )
    items: Annotated[list[ItemRequest] | None, AtMost("max_lines")] = Field(
        None, min_length=1, description="The lines: 1 to MAX_LINES, each product at most once."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return refuse_nulls(data)

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        check_shape(self.product_id, self.quantity, [i.product_id for i in self.items] if self.items else None)
        return self

    def lines(self) -> list[domain.Line]:
        if self.items is not None:
            return [domain.Line(i.product_id, i.quantity) for i in self.items]
        assert self.product_id is not None and self.quantity is not None  # _one_shape
        return [domain.Line(self.product_id, self.quantity)]


_TWO_LINES = [{"product_id": "P001", "quantity": 2}, {"product_id": "P002", "quantity": 1}]


class CheckRequest(_Lines):
    model_config = ConfigDict(json_schema_extra=lambda schema: document_shapes(schema, example={"items": _TWO_LINES}))


# Examples name an order the order service will not reach in a test run, so tools that send them
# (schemathesis) do not collide with real orders.
class ReserveRequest(_Lines):
    model_config = ConfigDict(
        json_schema_extra=lambda schema: document_shapes(
            schema, example={"order_id": "ORD90000001", "items": _TWO_LINES}
        )
    )

    order_id: Identifier


# At most this many reserves in one batch request: what one transaction of the group commit takes, too.
MAX_BATCH_RESERVES = 64


class ReserveBatchRequest(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "reservations": [
                    {"order_id": "ORD90000001", "product_id": "P001", "quantity": 1},
                    {
                        "order_id": "ORD90000002",
                        "items": [{"product_id": "P001", "quantity": 2}, {"product_id": "P002", "quantity": 1}],
                    },
                ]
            }
        }
    )

    reservations: list[ReserveRequest] = Field(
        min_length=1,
        max_length=MAX_BATCH_RESERVES,
        description="Each a reserve's body, as `POST /inventory/reserve` takes it.",
    )


class ReleaseRequest(Strict):
    model_config = ConfigDict(json_schema_extra={"example": {"order_id": "ORD90000001"}})

    order_id: Identifier
    product_id: Identifier | None = Field(None, description="When given, must be what the order holds.")
    quantity: Quantity | None = Field(None, ge=1, description="When given, must be what the order holds.")


class CommitRequest(Strict):
    model_config = ConfigDict(json_schema_extra={"example": {"order_id": "ORD90000001"}})

    order_id: Identifier


class RestockRequest(Strict):
    model_config = ConfigDict(json_schema_extra={"example": {"quantity": 25}})

    quantity: Restocked = Field(ge=1, description="Units to add; at most MAX_RESTOCK.")


# Free text, but never U+0000: PostgreSQL text cannot hold it (a 500 there, stored on SQLite).
_NO_NUL = r"^[^\x00]*$"


class CreateProductRequest(Strict):
    model_config = ConfigDict(
        json_schema_extra={"example": {"product_id": "P100", "name": "Desk Lamp", "price": 39.99, "quantity": 40}}
    )

    product_id: Identifier
    name: str = Field(min_length=1, max_length=200, pattern=_NO_NUL)
    price: MoneyIn
    quantity: Restocked = Field(0, ge=0, description="Units in stock to begin with; at most MAX_RESTOCK.")


class UpdateProductRequest(Strict):
    model_config = ConfigDict(json_schema_extra={"example": {"price": 34.99}})

    name: str | None = Field(None, min_length=1, max_length=200, pattern=_NO_NUL)
    price: MoneyIn | None = None


class Product(BaseModel):
    product_id: str
    name: str
    price: Money
    available_quantity: int
    reserved_quantity: int


class ProductList(BaseModel):
    products: list[Product]
    total_products: int


class CheckResult(BaseModel):
    available: bool
    available_quantity: int
    requested_quantity: int
    price: Money


class ItemCheck(CheckResult):
    product_id: str


class CartCheckResult(BaseModel):
    available: bool = Field(description="Every line is available.")
    items: list[ItemCheck] = Field(description="Each line, in the order asked.")


class CheckAnswer(RootModel[CheckResult | CartCheckResult]):
    """One product's check (`CheckResult`), or a cart's, per line (`CartCheckResult`)."""


class ReservationLine(BaseModel):
    product_id: str
    quantity: int
    unit_price: Money


class Reservation(BaseModel):
    order_id: str
    product_id: str | None = Field(
        description="The first line's (kept from before carts; read `lines`); null for a tombstone: released "
        "before anything was held."
    )
    quantity: int | None = Field(description="The first line's.")
    unit_price: Money | None = Field(description="The first line's.")
    status: Literal["held", "released", "committed"]
    created_at: Timestamp
    updated_at: Timestamp
    lines: list[ReservationLine] = Field(description="Every line, in the order reserved; empty for a tombstone.")


class ReserveOutcome(BaseModel):
    status: int = Field(description="What `POST /inventory/reserve` would answer this reserve: 201, 200, 404, 409.")
    reservation: Reservation | None = Field(None, description="With 200 and 201.")
    error: ErrorDetail | None = Field(None, description="With 404 and 409: the error `POST /inventory/reserve` gives.")


class ReserveBatchAnswer(BaseModel):
    results: list[ReserveOutcome] = Field(description="One per reserve, in the order sent.")


class ProductStock(BaseModel):
    available_quantity: int
    reserved_quantity: int
    ledger_available: int = Field(description="Sum of the ledger's available deltas; equals available_quantity.")
    ledger_reserved: int = Field(description="Sum of the ledger's reserved deltas; equals reserved_quantity.")
    held_reservations: int = Field(description="Units in held reservations; equals reserved_quantity.")
    sold_quantity: int = Field(description="Units sold: the sum the ledger's commits took out of reserved.")


class LineSummary(BaseModel):
    product_id: str
    quantity: int


class ReservationSummary(BaseModel):
    order_id: str
    product_id: str | None
    quantity: int | None
    status: Literal["held", "released", "committed"]
    updated_at: Timestamp
    lines: list[LineSummary]


class StockAudit(BaseModel):
    products: dict[str, ProductStock]
    reservations: list[ReservationSummary]


# --- rendering: the API's view of what storage returns, as the models above describe it ----------------------


def product_json(product: domain.Product) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "name": product.name,
        "price": product.price,
        "available_quantity": product.available_quantity,
        "reserved_quantity": product.reserved_quantity,
    }


def reservation_json(reservation: domain.Reservation) -> dict[str, Any]:
    return {
        "order_id": reservation.order_id,
        "product_id": reservation.product_id,
        "quantity": reservation.quantity,
        "unit_price": reservation.unit_price,
        "status": reservation.status.value,
        "created_at": rfc3339(reservation.created_at),
        "updated_at": rfc3339(reservation.updated_at),
        "lines": [
            {"product_id": line.product_id, "quantity": line.quantity, "unit_price": line.unit_price}
            for line in reservation.lines
        ],
    }


def reserve_outcome_json(answer: domain.Reserved | DomainError) -> dict[str, Any]:
    """One reserve of a batch: as `POST /inventory/reserve` would have answered it, status and body."""
    if isinstance(answer, DomainError):
        return {"status": domain_status(answer), **domain_error_json(answer)}
    return {"status": 201 if answer.created else 200, "reservation": reservation_json(answer.reservation)}


def reservation_summary_json(reservation: domain.Reservation) -> dict[str, Any]:
    return {
        "order_id": reservation.order_id,
        "product_id": reservation.product_id,
        "quantity": reservation.quantity,
        "status": reservation.status.value,
        "updated_at": rfc3339(reservation.updated_at),
        "lines": [{"product_id": line.product_id, "quantity": line.quantity} for line in reservation.lines],
    }


def check_json(result: domain.StockCheck) -> dict[str, Any]:
    return {
        "available": result.available,
        "available_quantity": result.available_quantity,
        "requested_quantity": result.requested_quantity,
        "price": result.price,
    }


def cart_check_json(results: list[domain.StockCheck]) -> dict[str, Any]:
    return {
        "available": all(r.available for r in results),
        "items": [{"product_id": r.product_id, **check_json(r)} for r in results],
    }


class LedgerFold(BaseModel):
    folded_rows: int = Field(description="Ledger rows folded into balance rows by this call.")
    more: bool = Field(description="Older rows are left: call again.")
