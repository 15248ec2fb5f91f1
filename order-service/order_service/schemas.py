"""Request and response models: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from order_service.storage import STATES
from service_common.money import Money
from service_common.parsing import Identifier

Status = Literal[STATES]  # type: ignore[valid-type]


class CreateOrderRequest(BaseModel):
    # JSON types exactly as sent (no "2" for 2, no true for 1); unknown fields refused.
    model_config = ConfigDict(strict=True, extra="forbid")

    product_id: Identifier
    quantity: StrictInt = Field(ge=1, description="Units to order; at most MAX_QUANTITY (10000 by default).")
    customer_id: Identifier = Field("guest", description='Who orders; "guest" when not given.')


class OrderPath(BaseModel):
    order_id: str = Field(description="Order id, e.g. ORD00000001.")


class OrderQuery(BaseModel):
    limit: int = Field(100, ge=1, le=1000)
    # Bounded by what the databases' OFFSET takes (a signed 64-bit integer); past the end a page is empty.
    offset: int = Field(0, ge=0, le=2**63 - 1)
    customer_id: Identifier | None = None
    status: Status | None = Field(None, description="Only orders in this state (refused ones included).")


class IdempotencyHeader(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        description="1-255 printable ASCII characters; a retry with the same key and body is answered again.",
    )


class Order(BaseModel):
    order_id: str
    product_id: str
    quantity: int
    customer_id: str
    status: Status
    unit_price: Money | None
    total_price: Money | None
    created_at: str = Field(description="UTC, RFC 3339.")
    cancelled_at: str | None = Field(None, description="Present once cancelled.")
    fulfilled_at: str | None = Field(None, description="Present once fulfilled.")


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
