"""Request and response models: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from service_common.money import Money
from service_common.parsing import Identifier


class Strict(BaseModel):
    # JSON types exactly as sent (no "2" for 2, no true for 1); unknown fields refused.
    model_config = ConfigDict(strict=True, extra="forbid")


Quantity = StrictInt


class ProductPath(BaseModel):
    product_id: str = Field(description="Product id, e.g. P001.")


class OrderPath(BaseModel):
    order_id: str = Field(description="Order id, e.g. ORD00000001.")


class CheckRequest(Strict):
    product_id: Identifier
    quantity: Quantity = Field(ge=1)


class ReserveRequest(Strict):
    order_id: Identifier
    product_id: Identifier
    quantity: Quantity = Field(ge=1)


class ReleaseRequest(Strict):
    order_id: Identifier
    product_id: Identifier | None = None
    quantity: Quantity | None = Field(None, ge=1)


class CommitRequest(Strict):
    order_id: Identifier


class RestockRequest(Strict):
    quantity: Quantity = Field(ge=1)


# Free text, but never U+0000: PostgreSQL text cannot hold it (a 500 there, stored on SQLite).
_NO_NUL = r"^[^\x00]*$"


class CreateProductRequest(Strict):
    product_id: Identifier
    name: str = Field(min_length=1, max_length=200, pattern=_NO_NUL)
    price: float | int = Field(ge=0, le=9_999_999_999.99)
    quantity: Quantity = Field(0, ge=0)


class UpdateProductRequest(Strict):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=_NO_NUL)
    price: float | int | None = Field(None, ge=0, le=9_999_999_999.99)


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


class Reservation(BaseModel):
    order_id: str
    product_id: str | None = Field(description="null for a tombstone: released before anything was held.")
    quantity: int | None
    unit_price: Money | None
    status: Literal["held", "released", "committed"]
    created_at: str
    updated_at: str


class ProductStock(BaseModel):
    available_quantity: int
    reserved_quantity: int
    ledger_available: int = Field(description="Sum of the ledger's available deltas; equals available_quantity.")
    ledger_reserved: int = Field(description="Sum of the ledger's reserved deltas; equals reserved_quantity.")
    held_reservations: int = Field(description="Units in held reservations; equals reserved_quantity.")


class ReservationSummary(BaseModel):
    order_id: str
    product_id: str | None
    quantity: int | None
    status: Literal["held", "released", "committed"]
    updated_at: str


class StockAudit(BaseModel):
    products: dict[str, ProductStock]
    reservations: list[ReservationSummary]
