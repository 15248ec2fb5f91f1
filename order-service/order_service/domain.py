"""The order domain's vocabulary: an order's states, the order as the saga sees it, and the refusals the
saga raises. No HTTP here: service_common.errors says each refusal over HTTP."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from service_common.domain import ConflictError, InvalidError, NotFoundError, UnavailableError

ORDER_PREFIX = "ORD"


class OrderStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    FAILING = "failing"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FULFILLING = "fulfilling"
    FULFILLED = "fulfilled"


# Refused orders are kept for the record but are not orders: left out of lists unless asked for.
REFUSED = (OrderStatus.REJECTED, OrderStatus.FAILING, OrderStatus.FAILED)
LISTED = tuple(s for s in OrderStatus if s not in REFUSED)
# States the recovery worker finishes when a request did not.
UNFINISHED = (OrderStatus.PENDING, OrderStatus.FAILING, OrderStatus.CANCELLING, OrderStatus.FULFILLING)
# States in which inventory may rightly hold stock for the order.
HOLDING = (OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.CANCELLING, OrderStatus.FULFILLING)


def format_order_id(number: int) -> str:
    return f"{ORDER_PREFIX}{number:08d}"


def parse_order_id(value: str) -> int | None:
    """The row id an order id names, or None when it names nothing (only the canonical form counts)."""
    digits = value[len(ORDER_PREFIX) :]
    if not value.startswith(ORDER_PREFIX) or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    number = int(digits)
    return number if format_order_id(number) == value else None


@dataclass(frozen=True)
class Line:
    """One line of an order as asked for: a product (at most once per order) and its quantity."""

    product_id: str
    quantity: int


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int
    unit_price: Decimal | None  # None until inventory has priced it (pending, refused)

    @property
    def line_price(self) -> Decimal | None:
        return None if self.unit_price is None else self.unit_price * self.quantity


@dataclass(frozen=True)
class Order:
    """An order row: the saga's log of where the order stands, with its lines."""

    id: int
    # The first line's product and quantity (the row's columns from before carts; read `lines`).
    product_id: str
    quantity: int
    customer_id: str
    status: OrderStatus
    unit_price: Decimal | None
    total_price: Decimal | None
    created_at: dt.datetime
    updated_at: dt.datetime
    cancelled_at: dt.datetime | None
    fulfilled_at: dt.datetime | None
    idempotency_scope: str | None
    idempotency_key: str | None
    request_fingerprint: str | None
    key_expires_at: dt.datetime | None
    # What the request that placed the order was answered, kept for idempotent replays.
    response_status: int | None
    response_body: str | None
    claimed_until: dt.datetime | None
    # How many events the order has raised (the last event's sequence).
    event_sequence: int = 0
    # In the order given; an order written before carts (no line rows) is its one line.
    lines: tuple[OrderLine, ...] = ()

    @property
    def order_id(self) -> str:
        return format_order_id(self.id)


@dataclass(frozen=True)
class OrderSummary:
    """What the audit compares with inventory."""

    id: int
    lines: tuple[Line, ...]
    status: OrderStatus
    updated_at: dt.datetime


# --- refusals ------------------------------------------------------------------------------------------------


class OrderNotFound(NotFoundError):
    code = "order_not_found"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"Order {order_id} not found.")


class NotCancellable(ConflictError):
    code = "not_cancellable"

    def __init__(self, order: Order) -> None:
        super().__init__(f"Order {order.order_id} is {order.status}.")


class NotFulfillable(ConflictError):
    code = "not_fulfillable"

    def __init__(self, order: Order) -> None:
        super().__init__(f"Order {order.order_id} is {order.status}.")


class ProductNotFound(NotFoundError):
    """Inventory knows no such product: the order is rejected (inventory's code and message are kept)."""

    code = "product_not_found"


class ReservationRefused(ConflictError):
    """Inventory refused to hold the stock (e.g. insufficient_stock): the order is rejected."""


class IdempotencyKeyReused(InvalidError):
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used with a different request body.")


class IdempotencyInProgress(ConflictError):
    code = "in_progress"


class InventoryOutage(UnavailableError):
    """Inventory is unreachable: an order placed now fails (and its key is let go)."""

    code = "inventory_unavailable"

    def __init__(self, message: str = "The inventory service is unavailable; retry shortly.") -> None:
        super().__init__(message, retry_after=2)
