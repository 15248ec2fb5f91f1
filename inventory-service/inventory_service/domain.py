"""The inventory domain's vocabulary: products, reservations and the refusals storage raises. No HTTP
here: service_common.errors says each refusal over HTTP."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypedDict

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
class Line:
    """One product and quantity of an order, as asked for."""

    product_id: str
    quantity: int


@dataclass(frozen=True)
class ReservationLine:
    product_id: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Reservation:
    order_id: str
    # The first line (None for a tombstone: released before anything was reserved). Kept for clients from
    # before carts; `lines` holds every line, in the order asked.
    product_id: str | None
    quantity: int | None
    unit_price: Decimal | None
    status: ReservationStatus
    created_at: dt.datetime
    updated_at: dt.datetime
    lines: tuple[ReservationLine, ...] = ()


@dataclass(frozen=True)
class Reserved:
    reservation: Reservation
    created: bool  # False: a retry of an earlier reserve, answered again


@dataclass(frozen=True)
class StockCheck:
    product_id: str
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


@dataclass(frozen=True)
class Shortage:
    product_id: str
    requested: int
    available: int


class InsufficientStock(ConflictError):
    """One or more lines are short; `details` names each. A one-line request also keeps the fields it was
    answered before carts (available_quantity, requested_quantity)."""

    code = "insufficient_stock"

    def __init__(self, short: list[Shortage], *, lines: int) -> None:
        first = short[0]
        message = f"Only {first.available} units of {first.product_id} are available; {first.requested} requested."
        if len(short) > 1:
            message += f" {len(short) - 1} more line(s) short."
        seed: dict[str, Any] = (
            {"available_quantity": first.available, "requested_quantity": first.requested} if lines == 1 else {}
        )
        super().__init__(
            message,
            **seed,
            details=[{"product_id": s.product_id, "requested": s.requested, "available": s.available} for s in short],
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
