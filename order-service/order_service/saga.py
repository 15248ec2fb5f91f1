"""The order saga: an order spans this service's database and inventory's, so every step is recorded
in the order row before the next is taken, and every inventory step is idempotent by order_id.

    pending ──reserve──> confirmed ──> cancelling ──release──> cancelled
       │                     └──────> fulfilling ──commit───> fulfilled
       ├──refused──> rejected
       └──outage───> failing ──release──> failed

Requests take these steps at once; the recovery worker (worker.py) finishes any a request left
behind (a crash, a timeout) once it is older than the grace period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from order_service import metrics, storage
from order_service.inventory_client import InventoryClient, InventoryRefused, InventoryUnavailable
from order_service.settings import Settings
from service_common.errors import ApiError, Conflict, NotFound, error_body
from service_common.failpoints import FailPoints
from service_common.jsonio import dumps
from service_common.money import to_money

log = logging.getLogger(__name__)

_RETRY_AFTER = "2"
_UNAVAILABLE = error_body("inventory_unavailable", "The inventory service is unavailable; retry shortly.")


@dataclass(frozen=True)
class Outcome:
    """What to answer: a status and a JSON body already encoded (replays answer the stored bytes)."""

    status: int
    body: bytes
    headers: dict[str, str]
    order_id: str | None = None


@dataclass(frozen=True)
class OrderRequest:
    product_id: str
    quantity: int
    customer_id: str

    def fingerprint(self) -> str:
        canonical = dumps({"customer_id": self.customer_id, "product_id": self.product_id, "quantity": self.quantity})
        return hashlib.sha256(canonical).hexdigest()


class OrderSaga:
    def __init__(self, engine: Engine, inventory: InventoryClient, settings: Settings) -> None:
        self.engine = engine
        self.inventory = inventory
        self.settings = settings
        self.failpoints = FailPoints(settings.failpoints)

    # --- placing an order ------------------------------------------------------------------------------------

    def place(self, request: OrderRequest, idempotency: tuple[str, str] | None) -> Outcome:
        key = (*idempotency, request.fingerprint()) if idempotency else None
        if key is not None:
            existing = storage.find_by_key(self.engine, key[0], key[1])
            if existing is not None and existing.key_expires_at > storage.utcnow():
                return self._replay(existing, key[2])
        try:
            order = storage.create_pending(
                self.engine,
                product_id=request.product_id,
                quantity=request.quantity,
                customer_id=request.customer_id,
                key=key,
                key_ttl=dt.timedelta(hours=self.settings.idempotency_ttl_hours),
            )
        except IntegrityError:
            # Another request with this key won the insert a moment ago.
            assert key is not None
            existing = storage.find_by_key(self.engine, key[0], key[1])
            if existing is None:
                raise ApiError(409, "in_progress", "A request with this Idempotency-Key is in progress.") from None
            return self._replay(existing, key[2])
        self.failpoints.hit("after_pending")
        order_id = storage.format_order_id(order.id)
        try:
            reservation = self.inventory.reserve(order_id, request.product_id, request.quantity)
        except InventoryRefused as exc:
            # 404/409 are inventory's decision on this order; anything else (401: a token mismatch)
            # is a fault of ours that the client cannot fix. A `released` answer means the worker
            # already failed this order and left a tombstone.
            if exc.status not in (404, 409) or exc.code == "released":
                log.error("reserve refused", extra={"fields": {"order_id": order_id, "reason": str(exc)}})
                return self._fail(order)
            return self._reject(order, exc)
        except InventoryUnavailable as exc:
            log.warning("reserve failed", extra={"fields": {"order_id": order_id, "reason": str(exc)}})
            return self._fail(order)
        self.failpoints.hit("after_reserve")
        return self._confirm(order, to_money(Decimal(str(reservation["unit_price"]))))

    def _confirm(self, order: Any, unit_price: Decimal) -> Outcome:
        values = storage.priced(unit_price, order.quantity)
        body = dumps(storage.order_json({**order._mapping, "status": storage.CONFIRMED, **values}))
        row = storage.transition(
            self.engine,
            order.id,
            storage.PENDING,
            storage.CONFIRMED,
            response_status=201,
            response_body=body.decode(),
            **values,
        )
        if row is None:
            return self._settled_elsewhere(order.id)
        metrics.saga_outcome("confirmed")
        return Outcome(201, body, {}, storage.format_order_id(order.id))

    def _reject(self, order: Any, refusal: InventoryRefused) -> Outcome:
        status = 404 if refusal.status == 404 else 409
        body = dumps(error_body(refusal.code, refusal.message))
        row = storage.transition(
            self.engine,
            order.id,
            storage.PENDING,
            storage.REJECTED,
            response_status=status,
            response_body=body.decode(),
        )
        if row is None:
            return self._settled_elsewhere(order.id)
        metrics.saga_outcome("rejected")
        return Outcome(status, body, {}, storage.format_order_id(order.id))

    def _fail(self, order: Any) -> Outcome:
        """Record the decision to fail before answering, then undo whatever inventory may hold."""
        body = dumps(_UNAVAILABLE)
        # The key is let go: a retry with it is a new attempt, not a replay of an outage.
        row = storage.transition(
            self.engine,
            order.id,
            storage.PENDING,
            storage.FAILING,
            response_status=503,
            response_body=body.decode(),
            idempotency_scope=None,
            idempotency_key=None,
        )
        if row is None:
            return self._settled_elsewhere(order.id)
        metrics.saga_outcome("failed")
        self.failpoints.hit("after_failing")
        self.finish_failing(row)
        return Outcome(503, body, {"Retry-After": _RETRY_AFTER}, storage.format_order_id(order.id))

    def finish_failing(self, order: Any) -> bool:
        """failing → failed once inventory confirms the order holds nothing."""
        order_id = storage.format_order_id(order.id)
        try:
            self.inventory.release(order_id)
        except (InventoryUnavailable, InventoryRefused) as exc:
            log.warning(
                "release of failed order deferred", extra={"fields": {"order_id": order_id, "reason": str(exc)}}
            )
            return False
        return storage.transition(self.engine, order.id, storage.FAILING, storage.FAILED) is not None

    def _settled_elsewhere(self, number: int) -> Outcome:
        """The worker moved the order first (only after the grace period): answer what it decided."""
        row = storage.get_order(self.engine, number)
        return self._stored_answer(row)

    def _stored_answer(self, row: Any) -> Outcome:
        headers = {"Retry-After": _RETRY_AFTER} if row.response_status == 503 else {}
        if row.response_body is not None:
            return Outcome(row.response_status, row.response_body.encode(), headers, storage.format_order_id(row.id))
        return Outcome(201, dumps(storage.order_json(row)), {}, storage.format_order_id(row.id))

    def _replay(self, existing: Any, fingerprint: str) -> Outcome:
        if existing.request_fingerprint != fingerprint:
            raise ApiError(
                422, "idempotency_key_reused", "This Idempotency-Key was used with a different request body."
            )
        deadline = time.monotonic() + self.settings.idempotency_wait_seconds
        row = existing
        while row.response_status is None:
            if time.monotonic() >= deadline:
                raise ApiError(
                    409,
                    "in_progress",
                    "A request with this Idempotency-Key is still in progress; retry shortly.",
                    headers={"Retry-After": "1"},
                )
            time.sleep(0.05)
            row = storage.get_order(self.engine, existing.id)
        return self._stored_answer(row)

    # --- cancelling ------------------------------------------------------------------------------------------

    def cancel(self, number: int) -> Outcome:
        return self._two_step(number, storage.CANCELLING, storage.CANCELLED, "not_cancellable", "after_cancelling")

    def fulfil(self, number: int) -> Outcome:
        return self._two_step(number, storage.FULFILLING, storage.FULFILLED, "not_fulfillable", None)

    def _two_step(self, number: int, middle: str, final: str, refusal: str, failpoint: str | None) -> Outcome:
        """confirmed → middle (only one request wins) → the inventory step → final.

        200 with the order once final; 202 while the inventory step is still owed (the worker delivers it).
        """
        row = storage.transition(self.engine, number, storage.CONFIRMED, middle)
        if row is None:
            current = self._existing(number)
            if current.status == final:
                return self._order(200, current)
            if current.status == middle:
                return self._order(202, current)
            raise Conflict(refusal, f"Order {storage.format_order_id(number)} is {current.status}.")
        if failpoint:
            self.failpoints.hit(failpoint)
        done = self.finish(row)
        return self._order(202, row) if done is None else self._order(200, done)

    def finish(self, order: Any) -> Any:
        """Deliver the inventory step a cancelling or fulfilling order still owes, then make it final.

        The order row as it ends, or None when inventory could not take the step now.
        """
        order_id = storage.format_order_id(order.id)
        if order.status == storage.CANCELLING:
            step, final, stamp = "release", storage.CANCELLED, "cancelled_at"
        else:
            step, final, stamp = "commit", storage.FULFILLED, "fulfilled_at"
        try:
            if step == "release":
                self.inventory.release(order_id, order.product_id, order.quantity)
            else:
                self.inventory.commit(order_id)
        except (InventoryUnavailable, InventoryRefused) as exc:
            log.warning(f"{step} deferred", extra={"fields": {"order_id": order_id, "reason": str(exc)}})
            return None
        done = storage.transition(self.engine, order.id, order.status, final, **{stamp: storage.utcnow()})
        if done is not None:
            metrics.saga_outcome(final)
        return done or storage.get_order(self.engine, order.id)

    # --- recovery --------------------------------------------------------------------------------------------

    def resolve_pending(self, order: Any) -> str:
        """A request left this order pending: confirm it if inventory holds a matching reservation, else fail it."""
        order_id = storage.format_order_id(order.id)
        reservation = self.inventory.reservation(order_id)
        if (
            reservation is not None
            and reservation["status"] == "held"
            and reservation["product_id"] == order.product_id
            and reservation["quantity"] == order.quantity
        ):
            outcome = self._confirm(order, to_money(Decimal(str(reservation["unit_price"]))))
            return "confirmed" if outcome.status == 201 else "skipped"
        # Nothing held (or something else held): fail it; the release leaves a tombstone so a reserve
        # still in flight can never hold stock for it later.
        self._fail(order)
        return "failed"

    # --- helpers ---------------------------------------------------------------------------------------------

    def _existing(self, number: int) -> Any:
        row = storage.get_order(self.engine, number)
        if row is None:
            raise NotFound(f"Order {storage.format_order_id(number)} not found.", "order_not_found")
        return row

    @staticmethod
    def _order(status: int, row: Any) -> Outcome:
        return Outcome(status, dumps(storage.order_json(row)), {}, storage.format_order_id(row.id))
