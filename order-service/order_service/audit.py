"""The consistency audit across both services (GET /admin/audit, `python -m order_service audit`).

Every confirmed order has a held reservation of the same lines (products and quantities), every fulfilled one a
committed reservation; every held reservation belongs to a pending / confirmed / cancelling /
fulfilling order; per product, reserved = sum of held reservations and the ledger adds up to the stock
columns. Orders and reservations that changed within the grace period are in flight and not judged;
a discrepancy is reported only if a second look, a moment later, still finds it.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from order_service import storage
from order_service.domain import HOLDING, InventoryOutage, OrderStatus, OrderSummary, format_order_id
from order_service.inventory_client import InventoryUnavailable
from order_service.saga import OrderSaga
from service_common.storage import utcnow

_RECHECK_PAUSE = 0.5
_REPORTED = 50


def audit(saga: OrderSaga) -> dict[str, Any]:
    first, counts = _look(saga)
    if first:
        time.sleep(_RECHECK_PAUSE)
        second, counts = _look(saga)
        confirmed = {key for key in first} & {key for key in second}
        found = [second[key] for key in sorted(confirmed)]
    else:
        found = []
    return {
        "consistent": not found,
        "checked": counts,
        "discrepancy_count": len(found),
        "discrepancies": found[:_REPORTED],
    }


def _look(saga: OrderSaga) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, int]]:
    cutoff = utcnow() - dt.timedelta(seconds=saga.settings.recovery_grace_seconds)
    orders = {format_order_id(o.id): o for o in storage.orders_for_audit(saga.engine)}
    try:
        report = saga.inventory.stock_report()
    except InventoryUnavailable as exc:
        # Not a fault of the audit: the same answer as any other request that needs inventory.
        raise InventoryOutage("The inventory service is unavailable; retry the audit shortly.") from exc
    reservations = {r["order_id"]: r for r in report["reservations"]}
    found: dict[tuple[str, str], dict[str, Any]] = {}

    def flag(kind: str, subject: str, detail: str) -> None:
        found[(kind, subject)] = {"kind": kind, "subject": subject, "detail": detail}

    in_flight = 0
    for order_id, order in orders.items():
        if order.updated_at > cutoff:
            in_flight += 1
            continue
        res = reservations.get(order_id)
        if order.status == OrderStatus.CONFIRMED and not _matches(res, order, "held"):
            flag("confirmed_without_reservation", order_id, f"reservation: {_describe(res)}")
        if order.status == OrderStatus.FULFILLED and not _matches(res, order, "committed"):
            flag("fulfilled_without_sale", order_id, f"reservation: {_describe(res)}")
    for order_id, res in reservations.items():
        if res["status"] != "held" or _recent(res["updated_at"], cutoff):
            continue
        holder = orders.get(order_id)
        if holder is None:
            flag("reservation_without_order", order_id, f"{_describe(res)} held")
        elif holder.updated_at <= cutoff and holder.status not in HOLDING:
            flag("stock_held_for_finished_order", order_id, f"order is {holder.status}; stock still held")
    for product_id, stock in report["products"].items():
        if stock["reserved_quantity"] != stock["held_reservations"]:
            flag(
                "reserved_mismatch",
                product_id,
                f"reserved_quantity {stock['reserved_quantity']} != held {stock['held_reservations']}",
            )
        if (stock["ledger_available"], stock["ledger_reserved"]) != (
            stock["available_quantity"],
            stock["reserved_quantity"],
        ):
            flag("ledger_mismatch", product_id, "the stock ledger does not add up to the stock columns")
    counts = {
        "orders": len(orders),
        "orders_in_flight": in_flight,
        "reservations": len(reservations),
        "products": len(report["products"]),
    }
    return found, counts


def _reserved(res: dict[str, Any]) -> list[tuple[str, int]]:
    """Each line of a reservation; one from an inventory release before carts (no `lines`) is its one line."""
    lines = res.get("lines")
    if lines is None:
        return [(res["product_id"], res["quantity"])]
    return [(line["product_id"], line["quantity"]) for line in lines]


def _matches(res: dict[str, Any] | None, order: OrderSummary, status: str) -> bool:
    """Every line of the order, and no other, is in the reservation, which is in `status`."""
    return (
        res is not None
        and res["status"] == status
        and _reserved(res) == [(line.product_id, line.quantity) for line in order.lines]
    )


def _describe(res: dict[str, Any] | None) -> str:
    if res is None:
        return "none"
    return f"{res['status']} " + ", ".join(f"{q} x {p}" for p, q in _reserved(res))


def _recent(timestamp: str, cutoff: dt.datetime) -> bool:
    return dt.datetime.fromisoformat(timestamp) > cutoff
