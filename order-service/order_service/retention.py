"""Retention, run by the recovery worker (worker.py) in short transactions of at most RETENTION_BATCH rows
each, so no lock is held for long (docs/events.md, "What each table keeps"):

- events older than EVENTS_RETENTION_HOURS are deleted (with a broker, EVENTS_BROKER_URL, only those the
  relay has published), and the feed's watermark raised past them in the same transaction;
- expired Idempotency-Keys are cleared from their orders (the orders stay);
- inventory folds its stock ledger (inventory's own database and setting): the worker asks it to, one
  batch per call, through the internal POST /inventory/ledger/fold.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from order_service.events import Cursor, event_feed_pruned
from order_service.inventory_client import InventoryClient, InventoryRefused, InventoryUnavailable
from order_service.settings import Settings
from order_service.storage import order_events, orders
from service_common.storage import reading, skip_locked, utcnow, writing

log = logging.getLogger(__name__)

# Batches one pass runs at most per kind, so a pass (and the worker's heartbeat) stays short; the next
# pass goes on where this one stopped.
MAX_BATCHES = 20


@dataclass(frozen=True)
class Pruned:
    events: int = 0
    keys: int = 0
    ledger_rows: int = 0


def prune_events(engine: Engine, *, older_than: dt.datetime, published_only: bool, batch: int) -> int:
    """Delete up to `batch` events that occurred before `older_than` (published ones only, if asked), and
    raise the feed's watermark to the greatest key deleted, in one transaction. The count deleted."""
    where = [order_events.c.occurred_at < older_than]
    if published_only:
        where.append(order_events.c.published_at.is_not(None))
    with writing(engine) as conn:
        # Two workers prune different rows.
        query = skip_locked(
            conn, sa.select(order_events.c.position, order_events.c.tx).where(*where).order_by(order_events.c.position)
        )
        rows = conn.execute(query.limit(batch)).all()
        if not rows:
            return 0
        conn.execute(order_events.delete().where(order_events.c.position.in_([r.position for r in rows])))
        top = max(Cursor(r.tx or 0, r.position) for r in rows)
        mark = event_feed_pruned.c
        below = sa.tuple_(mark.tx, mark.position) < sa.tuple_(top.tx, top.position)
        conn.execute(
            event_feed_pruned.update()
            .where(mark.id == 1)
            .values(
                # The greater of the two keys, decided in the row's own update (another pruner may be first).
                tx=sa.case((below, top.tx), else_=mark.tx),
                position=sa.case((below, top.position), else_=mark.position),
                pruned_count=mark.pruned_count + len(rows),
                pruned_at=utcnow(),
            )
        )
        return len(rows)


def clear_expired_keys(engine: Engine, *, batch: int) -> int:
    """Take up to `batch` expired Idempotency-Keys off their orders (the orders and their answers stay)."""
    now = utcnow()
    expired = [orders.c.idempotency_key.is_not(None), orders.c.key_expires_at <= now]
    with writing(engine) as conn:
        ids = skip_locked(conn, sa.select(orders.c.id).where(*expired).order_by(orders.c.key_expires_at).limit(batch))
        found = [r.id for r in conn.execute(ids)]
        if not found:
            return 0
        return conn.execute(
            orders.update()
            .where(orders.c.id.in_(found), *expired)
            .values(idempotency_scope=None, idempotency_key=None, request_fingerprint=None, key_expires_at=None)
        ).rowcount


def run_retention(engine: Engine, inventory: InventoryClient, settings: Settings) -> Pruned:
    """One retention pass: each kind in batches until done or MAX_BATCHES."""
    older_than = utcnow() - dt.timedelta(hours=settings.events_retention_hours)
    published_only = bool(settings.events_broker_url)
    batch = settings.retention_batch
    events = keys = ledger = 0
    for _ in range(MAX_BATCHES):
        done = prune_events(engine, older_than=older_than, published_only=published_only, batch=batch)
        events += done
        if done < settings.retention_batch:
            break
    for _ in range(MAX_BATCHES):
        done = clear_expired_keys(engine, batch=settings.retention_batch)
        keys += done
        if done < settings.retention_batch:
            break
    try:
        for _ in range(MAX_BATCHES):
            folded = inventory.fold_ledger()
            ledger += int(folded["folded_rows"])
            if not folded["more"]:
                break
    except (InventoryUnavailable, InventoryRefused) as exc:
        # An inventory release without the fold, or inventory down: the ledger waits for a later pass.
        log.warning("ledger not folded", extra={"fields": {"reason": str(exc)}})
    return Pruned(events, keys, ledger)


@dataclass(frozen=True)
class OutboxFigures:
    unpublished: int
    oldest_unpublished_age: float
    kept: int


def outbox_figures(engine: Engine) -> OutboxFigures:
    """The outbox's backlog for metrics and the console: unpublished events (the relay's backlog; without a
    broker, every event kept), the oldest one's age, and the events kept."""
    unpublished = order_events.c.published_at.is_(None)
    with reading(engine) as conn:
        backlog = conn.execute(
            sa.select(sa.func.count(), sa.func.min(order_events.c.occurred_at)).where(unpublished)
        ).one()
        kept = conn.execute(sa.select(sa.func.count()).select_from(order_events)).scalar_one()
    oldest = backlog[1]
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return OutboxFigures(int(backlog[0]), max(age, 0.0), int(kept))
