"""The inventory domain's vocabulary: products, reservations and the refusals storage raises. No HTTP
here: service_common.errors says each refusal over HTTP."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TypedDict

from service_common.domain import ConflictError, NotFoundError


class ReservationStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"
    COMMITTED = "committed"


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    price: Decimal
    available_quantity: int
    reserved_quantity: int


@dataclass(frozen=True)
class Reservation:
    order_id: str
    # None for a tombstone: released before anything was reserved.
    product_id: str | None
    quantity: int | None
    unit_price: Decimal | None
    status: ReservationStatus
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class Reserved:
    reservation: Reservation
    created: bool  # False: a retry of an earlier reserve, answered again


@dataclass(frozen=True)
class StockCheck:
    available: bool
    available_quantity: int
    requested_quantity: int
    price: Decimal


class ProductStock(TypedDict):
    """One product's stock columns beside what its ledger and held reservations add up to."""

    available_quantity: int
    reserved_quantity: int
    ledger_available: int
    ledger_reserved: int
    sold_quantity: int
    held_reservations: int


# --- refusals ------------------------------------------------------------------------------------------------


class ProductNotFound(NotFoundError):
    code = "product_not_found"

    def __init__(self, product_id: str) -> None:
        super().__init__(f"Product {product_id} not found.")


class ReservationNotFound(NotFoundError):
    code = "reservation_not_found"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"No reservation for order {order_id}.")


class InsufficientStock(ConflictError):
    code = "insufficient_stock"

    def __init__(self, product_id: str, available: int, requested: int) -> None:
        super().__init__(
            f"Only {available} units of {product_id} are available; {requested} requested.",
            available_quantity=available,
            requested_quantity=requested,
        )


class ReservationReleased(ConflictError):
    """The order was released (or left a tombstone): it can never hold or sell stock again."""

    code = "released"


class ReservationMismatch(ConflictError):
    """The order already holds another product or quantity."""

    code = "reservation_mismatch"


class ReservationCommitted(ConflictError):
    code = "committed"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"Order {order_id} was fulfilled; its stock is sold.")


class ProductExists(ConflictError):
    code = "product_exists"

    def __init__(self, product_id: str) -> None:
        super().__init__(f"Product {product_id} already exists.")
