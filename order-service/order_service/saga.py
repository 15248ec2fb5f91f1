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
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from order_service import metrics, storage
from order_service.domain import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InventoryOutage,
    Line,
    NotCancellable,
    NotFulfillable,
    Order,
    OrderNotFound,
    OrderStatus,
    ProductNotFound,
    ReservationRefused,
    format_order_id,
)
from order_service.inventory_client import InventoryClient, InventoryRefused, InventoryUnavailable
from order_service.settings import Settings
from service_common.domain import DomainError
from service_common.failpoints import FailPoints
from service_common.money import to_money
from service_common.storage import utcnow

log = logging.getLogger(__name__)

PENDING, CONFIRMED, FAILING, FAILED = (
    OrderStatus.PENDING,
    OrderStatus.CONFIRMED,
    OrderStatus.FAILING,
    OrderStatus.FAILED,
)


@dataclass(frozen=True)
class Answer:
    """What placing an order was answered, as stored with it: replays answer these bytes again."""

    status: int
    body: bytes


class Answers(Protocol):
    """How the saga's decisions on a new order are said to its client (order_service.answers)."""

    def placed(self, order: Order) -> Answer: ...

    def refused(self, refusal: DomainError) -> Answer: ...

    def describe(self, order: Order) -> bytes:
        """The order as the API shows it (JSON): the data of the event its new state raises."""
        ...


@dataclass(frozen=True)
class Placement:
    order_id: str
    answer: Answer


@dataclass(frozen=True)
class Step:
    """Where a cancel or fulfil left the order: done once final, else the worker still owes inventory's step."""

    order: Order
    done: bool


@dataclass(frozen=True)
class OrderRequest:
    lines: tuple[Line, ...]
    customer_id: str

    def fingerprint(self) -> str:
        """What an Idempotency-Key is held to. A one-line cart hashes as the seed's body did, so a key
        retried across the upgrade to carts (or sent with either shape) replays instead of answering 422."""
        if len(self.lines) == 1:
            line = self.lines[0]
            canonical = {"customer_id": self.customer_id, "product_id": line.product_id, "quantity": line.quantity}
        else:
            items = [{"product_id": line.product_id, "quantity": line.quantity} for line in self.lines]
            canonical = {"customer_id": self.customer_id, "items": items}
        return hashlib.sha256(orjson.dumps(canonical)).hexdigest()


class OrderSaga:
    def __init__(self, engine: Engine, inventory: InventoryClient, settings: Settings, answers: Answers) -> None:
        self.engine = engine
        self.inventory = inventory
        self.settings = settings
        self.answers = answers
        self.failpoints = FailPoints(settings.failpoints)

    # --- placing an order ------------------------------------------------------------------------------------

    def place(self, request: OrderRequest, idempotency: tuple[str, str] | None) -> Placement:
        key = (*idempotency, request.fingerprint()) if idempotency else None
        if key is not None:
            existing = storage.find_by_key(self.engine, key[0], key[1])
            if existing is not None and existing.key_expires_at is not None and existing.key_expires_at > utcnow():
                return self._replay(existing, key[2])
        try:
            order = storage.create_pending(
                self.engine,
                lines=request.lines,
                customer_id=request.customer_id,
                key=key,
                key_ttl=dt.timedelta(hours=self.settings.idempotency_ttl_hours),
            )
        except IntegrityError:
            # Another request with this key won the insert a moment ago.
            assert key is not None
            existing = storage.find_by_key(self.engine, key[0], key[1])
            if existing is None:
                raise IdempotencyInProgress("A request with this Idempotency-Key is in progress.") from None
            return self._replay(existing, key[2])
        metrics.order_lines(len(request.lines))
        self.failpoints.hit("after_pending")
        try:
            reservation = self.inventory.reserve(order.order_id, request.lines)
        except InventoryRefused as exc:
            # A refusal that is not inventory's decision on this order (401: a token mismatch) is a fault
            # of ours the client cannot fix; a `released` one means the worker already failed this order.
            if not exc.rejects_order:
                log.error("reserve refused", extra={"fields": {"order_id": order.order_id, "reason": str(exc)}})
                return self._fail(order)
            return self._reject(order, exc)
        except InventoryUnavailable as exc:
            log.warning("reserve failed", extra={"fields": {"order_id": order.order_id, "reason": str(exc)}})
            return self._fail(order)
        self.failpoints.hit("after_reserve")
        answer = self._confirm(order, _prices(reservation))
        return Placement(order.order_id, answer) if answer is not None else self._settled_elsewhere(order.id)

    def _confirm(self, order: Order, prices: dict[str, Decimal]) -> Answer | None:
        """pending → confirmed with its prices and its answer (stored with it, for replays): that answer, or
        None when the worker settled the order first."""
        lines = tuple(replace(line, unit_price=prices[line.product_id]) for line in order.lines)
        total = sum((line.line_price or Decimal(0) for line in lines), Decimal("0.00"))
        priced = replace(
            order, status=CONFIRMED, lines=lines, unit_price=lines[0].unit_price, total_price=to_money(total)
        )
        answer = self.answers.placed(priced)
        if not storage.confirm(
            self.engine,
            order,
            prices,
            describe=self.answers.describe,
            response_status=answer.status,
            response_body=answer.body.decode(),
        ):
            return None
        metrics.saga_outcome("confirmed")
        return answer

    def _reject(self, order: Order, refusal: InventoryRefused) -> Placement:
        # Inventory's short lines, if any, are the client's to see: {product_id, requested, available}.
        details: dict[str, Any] = {"details": refusal.details} if refusal.details is not None else {}
        reason: DomainError = (
            ProductNotFound(refusal.message, code=refusal.code)
            if refusal.missing
            else ReservationRefused(refusal.message, code=refusal.code, **details)
        )
        answer = self.answers.refused(reason)
        row = storage.transition(
            self.engine,
            order.id,
            PENDING,
            OrderStatus.REJECTED,
            response_status=answer.status,
            response_body=answer.body.decode(),
        )
        if row is None:
            return self._settled_elsewhere(order.id)
        metrics.saga_outcome("rejected")
        return self._placement(row)

    def _fail(self, order: Order) -> Placement:
        """Record the decision to fail before answering, then undo whatever inventory may hold."""
        answer = self.answers.refused(InventoryOutage())
        # The key is let go: a retry with it is a new attempt, not a replay of an outage.
        row = storage.transition(
            self.engine,
            order.id,
            PENDING,
            FAILING,
            response_status=answer.status,
            response_body=answer.body.decode(),
            idempotency_scope=None,
            idempotency_key=None,
        )
        if row is None:
            return self._settled_elsewhere(order.id)
        metrics.saga_outcome("failed")
        self.failpoints.hit("after_failing")
        self.finish_failing(row)
        return self._placement(row)

    def finish_failing(self, order: Order) -> bool:
        """failing → failed once inventory confirms the order holds nothing."""
        try:
            self.inventory.release(order.order_id)
        except (InventoryUnavailable, InventoryRefused) as exc:
            log.warning(
                "release of failed order deferred",
                extra={"fields": {"order_id": order.order_id, "reason": str(exc)}},
            )
            return False
        return storage.transition(self.engine, order.id, FAILING, FAILED) is not None

    def _settled_elsewhere(self, number: int) -> Placement:
        """The worker moved the order first (only after the grace period): answer what it decided."""
        return self._placement(self._existing(number))

    def _placement(self, order: Order) -> Placement:
        """The answer stored with the order (one placed before answers were stored: the order itself)."""
        if order.response_status is not None and order.response_body is not None:
            return Placement(order.order_id, Answer(order.response_status, order.response_body.encode()))
        return Placement(order.order_id, self.answers.placed(order))

    def _replay(self, existing: Order, fingerprint: str) -> Placement:
        if existing.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused
        deadline = time.monotonic() + self.settings.idempotency_wait_seconds
        row = existing
        while row.response_status is None:
            if time.monotonic() >= deadline:
                raise IdempotencyInProgress(
                    "A request with this Idempotency-Key is still in progress; retry shortly.", retry_after=1
                )
            time.sleep(0.05)
            row = self._existing(existing.id)
        return self._placement(row)

    # --- cancelling and fulfilling ---------------------------------------------------------------------------

    def cancel(self, number: int) -> Step:
        return self._two_step(number, OrderStatus.CANCELLING, OrderStatus.CANCELLED, NotCancellable, "after_cancelling")

    def fulfil(self, number: int) -> Step:
        return self._two_step(number, OrderStatus.FULFILLING, OrderStatus.FULFILLED, NotFulfillable, None)

    def _two_step(
        self,
        number: int,
        middle: OrderStatus,
        final: OrderStatus,
        refusal: type[NotCancellable | NotFulfillable],
        failpoint: str | None,
    ) -> Step:
        """confirmed → middle (only one request wins) → the inventory step → final.

        Done once final; not done while the inventory step is still owed (the worker delivers it).
        """
        row = storage.transition(self.engine, number, CONFIRMED, middle)
        if row is None:
            current = self._existing(number)
            if current.status == final:
                return Step(current, done=True)
            if current.status == middle:
                return Step(current, done=False)
            raise refusal(current)
        if failpoint:
            self.failpoints.hit(failpoint)
        done = self.finish(row)
        return Step(row, done=False) if done is None else Step(done, done=True)

    def finish(self, order: Order) -> Order | None:
        """Deliver the inventory step a cancelling or fulfilling order still owes, then make it final.

        The order as it ends, or None when inventory could not take the step now.
        """
        try:
            if order.status == OrderStatus.CANCELLING:
                # A one-line order names what it releases, as before carts; a cart releases by order alone.
                if len(order.lines) == 1:
                    self.inventory.release(order.order_id, order.lines[0].product_id, order.lines[0].quantity)
                else:
                    self.inventory.release(order.order_id)
            else:
                self.inventory.commit(order.order_id)
        except (InventoryUnavailable, InventoryRefused) as exc:
            step = "release" if order.status == OrderStatus.CANCELLING else "commit"
            log.warning(f"{step} deferred", extra={"fields": {"order_id": order.order_id, "reason": str(exc)}})
            return None
        now = utcnow()
        describe = self.answers.describe
        if order.status == OrderStatus.CANCELLING:
            done = storage.transition(
                self.engine, order.id, order.status, OrderStatus.CANCELLED, describe=describe, cancelled_at=now
            )
        else:
            done = storage.transition(
                self.engine, order.id, order.status, OrderStatus.FULFILLED, describe=describe, fulfilled_at=now
            )
        if done is not None:
            metrics.saga_outcome(done.status.value)
        return done or self._existing(order.id)

    # --- recovery --------------------------------------------------------------------------------------------

    def resolve_pending(self, order: Order) -> str:
        """A request left this order pending: confirm it if inventory holds a matching reservation, else fail it."""
        reservation = self.inventory.reservation(order.order_id)
        if (
            reservation is not None
            and reservation["status"] == "held"
            and [(line["product_id"], line["quantity"]) for line in _reserved_lines(reservation)]
            == [(line.product_id, line.quantity) for line in order.lines]
        ):
            answer = self._confirm(order, _prices(reservation))
            return "confirmed" if answer is not None else "skipped"
        # Nothing held (or something else held): fail it; the release leaves a tombstone so a reserve
        # still in flight can never hold stock for it later.
        self._fail(order)
        return "failed"

    # --- helpers ---------------------------------------------------------------------------------------------

    def _existing(self, number: int) -> Order:
        row = storage.get_order(self.engine, number)
        if row is None:
            raise OrderNotFound(format_order_id(number))
        return row


def _reserved_lines(reservation: dict[str, Any]) -> list[dict[str, Any]]:
    """A reservation's lines; one from an inventory release before carts (no `lines`) is its one line."""
    lines: list[dict[str, Any]] | None = reservation.get("lines")
    if lines is None:
        return [{k: reservation[k] for k in ("product_id", "quantity", "unit_price")}]
    return lines


def _prices(reservation: dict[str, Any]) -> dict[str, Decimal]:
    """Each product's unit price as inventory reserved it."""
    return {line["product_id"]: to_money(Decimal(str(line["unit_price"]))) for line in _reserved_lines(reservation)}
