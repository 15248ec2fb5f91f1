"""Request and response models: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema, model_validator

from order_service.domain import Line, OrderStatus
from order_service.domain import Order as OrderRow
from service_common.limits import AtMost, LimitedModel
from service_common.lines import check_shape, document_shapes, refuse_nulls
from service_common.money import Money
from service_common.openapi import Timestamp
from service_common.parsing import Identifier
from service_common.storage import rfc3339

# Documented inline as a string enum, as a Literal would be.
Status = Annotated[OrderStatus, WithJsonSchema({"enum": [s.value for s in OrderStatus], "type": "string"})]


_Quantity = Annotated[StrictInt, AtMost("max_quantity")]


class CartItem(LimitedModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    product_id: Identifier
    quantity: _Quantity = Field(ge=1, description="Units; at most MAX_QUANTITY.")


class CreateOrderRequest(LimitedModel):
    """A cart (`items`) or, as before carts, one product (`product_id` and `quantity`: a one-line cart)."""

    # JSON types exactly as sent (no "2" for 2, no true for 1); unknown fields refused.
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra=lambda schema: document_shapes(
            schema,
            example={
                "items": [{"product_id": "P002", "quantity": 2}, {"product_id": "P003", "quantity": 1}],
                "customer_id": "C123",
            },
        ),
    )

    product_id: Identifier | None = Field(None, description="One product (with `quantity`); or give `items`.")
    quantity: Annotated[StrictInt | None, AtMost("max_quantity")] = Field(
        None, ge=1, description="Units of `product_id`; at most MAX_QUANTITY."
    )
    items: Annotated[list[CartItem] | None, AtMost("max_lines")] = Field(
        None, min_length=1, description="The cart: 1 to MAX_LINES lines, each product at most once, kept in order."
    )
    customer_id: Identifier = Field("guest", description='Who orders; "guest" when not given.')

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        return refuse_nulls(data)

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        check_shape(self.product_id, self.quantity, [i.product_id for i in self.items] if self.items else None)
        return self

    def lines(self) -> tuple[Line, ...]:
        if self.items is not None:
            return tuple(Line(i.product_id, i.quantity) for i in self.items)
        assert self.product_id is not None and self.quantity is not None  # _one_shape
        return (Line(self.product_id, self.quantity),)


class OrderPath(BaseModel):
    # Any string: one that names no order is answered 404 (order_not_found), not 422.
    order_id: str = Field(
        description="Order id: ORD and eight or more digits.", json_schema_extra={"example": "ORD00000001"}
    )


class OrderQuery(BaseModel):
    limit: int = Field(100, ge=1, le=1000, description="Orders per page.")
    # Bounded by what the databases' OFFSET takes (a signed 64-bit integer); past the end a page is empty.
    offset: int = Field(0, ge=0, le=2**63 - 1, description="Orders to skip, newest first.")
    customer_id: Identifier | None = Field(None, description="Only this customer's orders.")
    status: Status | None = Field(
        None, title="Status", description="Only orders in this state (refused ones included)."
    )


# The key is checked by the route after the body (400 invalid_idempotency_key, not 422); the document says
# what it takes.
_IdempotencyKey = Annotated[
    str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"})
]


def _no_default(schema: dict[str, Any]) -> None:
    # Optional, but never null: a header is there or it is not.
    schema.pop("default", None)


class IdempotencyHeader(BaseModel):
    """The headers POST /orders reads, for its document only: the route reads the header itself, so no
    model is validated per request (flask-openapi3 would copy every header into one for each order)."""

    model_config = ConfigDict(populate_by_name=True)

    idempotency_key: _IdempotencyKey = Field(
        None,
        alias="Idempotency-Key",
        description="1-255 printable ASCII characters. A retry with the same key and body is answered the "
        "first answer again, without placing another order; the same key with another body is refused (422).",
        json_schema_extra=_no_default,
    )


def header_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A header model's fields as OpenAPI parameters (what flask-openapi3 writes for a `header:` argument)."""
    schema = model.model_json_schema(by_alias=True)
    required = schema.get("required", [])
    return [
        {
            "name": name,
            "in": "header",
            "required": name in required,
            "description": field["description"],
            "schema": field,
        }
        for name, field in schema["properties"].items()
    ]


class OrderItem(BaseModel):
    product_id: str
    quantity: int
    unit_price: Money | None = Field(description="null until inventory priced it (a refused order).")
    line_price: Money | None = Field(description="unit_price x quantity, exact.")


class Order(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "order_id": "ORD00000001",
                "product_id": "P001",
                "quantity": 2,
                "customer_id": "C123",
                "status": "confirmed",
                "unit_price": 999.99,
                "total_price": 1999.98,
                "items": [{"product_id": "P001", "quantity": 2, "unit_price": 999.99, "line_price": 1999.98}],
                "created_at": "2026-01-01T12:00:00.000000+00:00",
            }
        }
    )

    order_id: str
    product_id: str | None = Field(description="The product of a one-line order; null for a cart of several.")
    quantity: int = Field(description="Units of a one-line order; for a cart, the units of all its lines.")
    customer_id: str
    status: Status = Field(title="Status")
    unit_price: Money | None = Field(description="The unit price of a one-line order; null for a cart.")
    total_price: Money | None = Field(description="The exact sum of the lines' prices.")
    items: list[OrderItem] = Field(description="Every line, in the order given.")
    created_at: Timestamp = Field(description="UTC, RFC 3339.")
    cancelled_at: Timestamp | None = Field(None, description="Present once cancelled.")
    fulfilled_at: Timestamp | None = Field(None, description="Present once fulfilled.")


def order_json(order: OrderRow) -> dict[str, Any]:
    """The API's view of an order (the Order model's fields)."""
    one = order.lines[0] if len(order.lines) == 1 else None
    body: dict[str, Any] = {
        "order_id": order.order_id,
        "product_id": one.product_id if one else None,
        "quantity": one.quantity if one else sum(line.quantity for line in order.lines),
        "customer_id": order.customer_id,
        "status": order.status.value,
        "unit_price": one.unit_price if one else None,
        "total_price": order.total_price,
        "items": [
            {
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_price": line.line_price,
            }
            for line in order.lines
        ],
        "created_at": rfc3339(order.created_at),
    }
    if order.cancelled_at is not None:
        body["cancelled_at"] = rfc3339(order.cancelled_at)
    if order.fulfilled_at is not None:
        body["fulfilled_at"] = rfc3339(order.fulfilled_at)
    return body


class OrderList(BaseModel):
    orders: list[Order]
    total_count: int


class Discrepancy(BaseModel):
    kind: str = Field(description="e.g. confirmed_without_reservation, reserved_mismatch, ledger_mismatch.")
    subject: str = Field(description="The order or product concerned.")
    detail: str


class AuditReport(BaseModel):
    consistent: bool
    checked: dict[str, int]
    discrepancy_count: int
    discrepancies: list[Discrepancy] = Field(description="The first 50.")


class EventQuery(BaseModel):
    after: str | None = Field(
        None,
        max_length=256,
        pattern="^[A-Za-z0-9_-]*$",
        description="The `next` of the page before (opaque). Without it, the feed starts at the oldest event kept.",
    )
    limit: int = Field(100, ge=1, le=1000, description="Events per page.")
    wait: float = Field(
        0, ge=0, le=20, description="Seconds to wait for an event while there is none (long poll); 0: answer at once."
    )


class Event(BaseModel):
    """One change of an order (CloudEvents 1.0 attributes, plus `order_id` and `sequence`)."""

    specversion: Literal["1.0"]
    id: str = Field(description="`<order_id>:<sequence>`: the same on every delivery of this event.")
    type: Literal["order.confirmed", "order.cancelled", "order.fulfilled"]
    source: Literal["/orders"]
    subject: str = Field(description="The order id.")
    order_id: str
    sequence: int = Field(ge=1, description="1, 2, … per order, without gaps.")
    time: Timestamp = Field(description="When the change was made (UTC, RFC 3339).")
    datacontenttype: Literal["application/json"]
    data: Order = Field(description="The order as GET /orders/{order_id} showed it after the change.")


class EventPage(BaseModel):
    events: list[Event] = Field(description="Oldest first.")
    next: str = Field(description="The cursor to read on from (`after`); the same when no event was new.")
