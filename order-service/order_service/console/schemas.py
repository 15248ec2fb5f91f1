"""The console's admin API models: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from order_service.schemas import Status
from service_common.money import Money, MoneyIn
from service_common.openapi import Timestamp

# Free text, but never U+0000 (as inventory's own update takes it).
_NO_NUL = r"^[^\x00]*$"


class ProductPath(BaseModel):
    # Any string: one that names no product is answered 404 (product_not_found), not 422.
    product_id: str = Field(description="Product id.", json_schema_extra={"example": "P001"})


class RestockRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"example": {"quantity": 25}})

    quantity: StrictInt = Field(ge=1, description="Units to add; at most inventory's MAX_RESTOCK.")


class UpdateProductRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"example": {"price": 34.99}})

    name: str | None = Field(None, min_length=1, max_length=200, pattern=_NO_NUL)
    price: MoneyIn | None = None


class Product(BaseModel):
    product_id: str
    name: str
    price: Money
    available_quantity: int
    reserved_quantity: int


class StockItem(Product):
    sold_quantity: int = Field(description="Units sold, from inventory's ledger (its commits).")
    low_stock: bool = Field(description="available_quantity is at or below low_stock_threshold.")


class StockList(BaseModel):
    products: list[StockItem]
    low_stock_threshold: int = Field(description="CONSOLE_LOW_STOCK: units at or below which stock is low.")


class InFlightOrder(BaseModel):
    order_id: str
    status: Status
    since: Timestamp = Field(description="When the order entered this state (UTC, RFC 3339).")
    age_seconds: float = Field(description="Seconds since then, by the order service's clock.")


class WorkerHeartbeat(BaseModel):
    worker_id: str = Field(description="The worker process: host name (the pod's name) and pid.")
    started_at: Timestamp
    last_beat: Timestamp
    age_seconds: float = Field(description="Seconds since its last heartbeat was recorded.")
    stale_after_seconds: float = Field(description="Age after which its own liveness probe fails.")
    fresh: bool = Field(description="Its heartbeat is younger than stale_after_seconds.")


class Outbox(BaseModel):
    broker: bool = Field(description="A broker relay is configured (EVENTS_BROKER_URL): it publishes the events.")
    unpublished: int = Field(description="Events not published to the broker yet (without one: every event kept).")
    oldest_unpublished_age_seconds: float = Field(description="Age of the oldest of them; 0 if none.")
    kept: int = Field(description="Events the outbox keeps for the feed (GET /events).")
    retention_hours: float = Field(description="Events older than this are pruned (published ones, with a broker).")


class SagaHealth(BaseModel):
    counts: dict[str, int] = Field(description="Orders in each state, every state listed.")
    in_flight: int = Field(description="Orders between two steps: pending, failing, cancelling, fulfilling.")
    oldest_in_flight: InFlightOrder | None = Field(description="The in-flight order waiting longest; null if none.")
    recovery_grace_seconds: float = Field(description="Age after which the recovery worker finishes an order.")
    outbox: Outbox = Field(description="The order events' outbox.")
    workers: list[WorkerHeartbeat] = Field(
        description="Every recovery worker that beat within the last day, by id; a stale one has stopped moving."
    )
    checked_at: Timestamp
