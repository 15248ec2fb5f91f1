"""The event relay: publishes the outbox (order_events) to the broker, at least once, each order's events in
sequence, and marks them published. A thread of the recovery worker (`python -m order_service worker`) when
EVENTS_BROKER_URL is set; docs/events.md and docs/decisions.md say why it works this way.

- **One active relay.** Every worker replica runs a relay, but only the one holding the lease in the order
  database (relay_leases, migration 0007) publishes: a conditional update takes the lease when it is free
  or expired and renews it while held. The holder stops publishing a publish timeout (plus a second) before
  its term ends by its own clock, so a standby that takes an expired lease never publishes beside it.
  Marking is fenced: it renews the lease in the same transaction, by holder and token, and marks nothing
  if another relay took over (those events are published again, with the same ids).
- **In order.** It reads unpublished events by position and publishes them one after another, each waiting
  for the broker's ack; at the first failure it stops the round. An order's next event is inserted by a
  transaction that first updated the order's row, which the previous event's transaction held locked until
  it committed: so it has a higher position and is never visible before it. An order's events reach the
  broker in `sequence`. (Across orders, an event whose transaction commits late is
  published when it shows up.)
- **At least once.** An event is marked only after its ack; a crash between the two publishes it again
  with the same `Nats-Msg-Id` (the event id), which JetStream drops and consumers deduplicate.
- **Broker down.** Each failed attempt backs off (0.1 s doubling to 5 s); the outbox grows meanwhile and
  nothing is lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import socket
import threading
import time

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from order_service import metrics
from order_service.broker import BrokerConfig, BrokerUnavailable, Publisher
from order_service.domain import format_order_id
from order_service.events import Event
from order_service.settings import Settings
from order_service.storage import metadata, order_events
from service_common.failpoints import FailPoints
from service_common.storage import UTCDateTime, reading, utcnow, writing

log = logging.getLogger(__name__)

LEASE_NAME = "order-events"
# How often a standby relay tries the lease.
STANDBY_SECONDS = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0

relay_leases = sa.Table(
    "relay_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    # Bumped on every change of holder: the fencing token a holder checks before it marks.
    sa.Column("token", sa.Integer, nullable=False, server_default="0"),
)


# --- the outbox, as the relay reads it ---------------------------------------------------------------------


def unpublished(engine: Engine, limit: int) -> list[Event]:
    """The oldest events not yet published, by position (the partial index on unpublished rows)."""
    e = order_events.c
    query = (
        sa.select(e.position, e.tx, e.order_id, e.sequence, e.type, e.occurred_at, e.data)
        .where(e.published_at.is_(None))
        .order_by(e.position)
        .limit(limit)
    )
    with reading(engine) as conn:
        return [
            Event(r.position, r.tx or 0, r.order_id, r.sequence, r.type, r.occurred_at, r.data)
            for r in conn.execute(query)
        ]


def message(event: Event) -> bytes:
    """The event as published: as the feed answers it (CloudEvents 1.0 attributes, the order as data)."""
    return orjson.dumps(event.as_json())


# --- the lease ---------------------------------------------------------------------------------------------


class Lease:
    """One relay at a time publishes: the holder of this row (conditional updates, no process lock)."""

    def __init__(self, engine: Engine, holder: str, term: float, stop_before_end: float) -> None:
        self._engine = engine
        self.holder = holder[:128]
        self._term = term
        self._stop_before_end = stop_before_end
        self.token: int | None = None
        self._valid_until = 0.0  # monotonic: publish only before this
        self._renew_at = 0.0

    def held(self) -> bool:
        return self.token is not None and time.monotonic() < self._valid_until

    def hold(self) -> bool:
        """Take the lease if it is free or expired, renew it if it is ours and a third of its term has
        gone; True while this relay holds it."""
        if self.held() and time.monotonic() < self._renew_at:
            return True
        started, now = time.monotonic(), utcnow()
        lease = relay_leases.c
        with writing(self._engine) as conn:
            token = conn.execute(
                relay_leases.update()
                .where(
                    lease.name == LEASE_NAME,
                    sa.or_(lease.holder == self.holder, lease.expires_at.is_(None), lease.expires_at < now),
                )
                .values(
                    holder=self.holder,
                    expires_at=now + dt.timedelta(seconds=self._term),
                    token=sa.case((lease.holder == self.holder, lease.token), else_=lease.token + 1),
                )
                .returning(lease.token)
            ).scalar()
        if token is None:
            if self.token is not None:
                log.warning("relay lease lost", extra={"fields": {"holder": self.holder}})
            self.token = None
            return False
        if token != self.token:
            log.info("relay lease taken", extra={"fields": {"holder": self.holder, "token": token}})
        self.token = token
        self._started(started)
        return True

    def release(self) -> None:
        """Give the lease up (a worker stopping): a standby takes it at its next try, not at the term's end."""
        if self.token is None:
            return
        lease = relay_leases.c
        with writing(self._engine) as conn:
            conn.execute(
                relay_leases.update()
                .where(lease.name == LEASE_NAME, lease.holder == self.holder, lease.token == self.token)
                .values(expires_at=None)
            )
        self.token = None

    def _started(self, at: float) -> None:
        self._valid_until = at + self._term - self._stop_before_end
        self._renew_at = at + self._term / 3

    def mark_published(self, positions: list[int]) -> bool:
        """Mark these events published and renew the lease, in one transaction, only if this relay still
        holds it under the same token (fencing); False (nothing marked) when it does not."""
        started, now = time.monotonic(), utcnow()
        lease = relay_leases.c
        with writing(self._engine) as conn:
            renewed = conn.execute(
                relay_leases.update()
                .where(lease.name == LEASE_NAME, lease.holder == self.holder, lease.token == self.token)
                .values(expires_at=now + dt.timedelta(seconds=self._term))
            ).rowcount
            if not renewed:
                self.token = None
                log.warning("relay lease lost before marking", extra={"fields": {"holder": self.holder}})
                return False
            conn.execute(
                order_events.update()
                .where(order_events.c.position.in_(positions), order_events.c.published_at.is_(None))
                .values(published_at=now)
            )
        self._started(started)
        return True


# --- the relay ---------------------------------------------------------------------------------------------


def relay_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Relay:
    """Call start(stop) from the worker: a daemon thread with its own asyncio loop until `stop` is set."""

    def __init__(self, engine: Engine, settings: Settings, failpoints: FailPoints, holder: str | None = None) -> None:
        self._engine = engine
        self._settings = settings
        self._failpoints = failpoints
        self._publisher = Publisher(BrokerConfig.of(settings))
        self.lease = Lease(
            engine,
            holder or relay_id(),
            settings.events_relay_lease_seconds,
            stop_before_end=settings.events_publish_timeout + 1,
        )
        self._delay = 0.0  # the backoff: 0 while healthy
        self._failed = False  # the last attempt failed: the next one is a retry

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="event-relay", daemon=True)
        thread.start()
        return thread

    def run(self, stop: threading.Event) -> None:
        log.info(
            "relay started", extra={"fields": {"holder": self.lease.holder, "stream": self._settings.events_stream}}
        )
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                pause = await self.step()
                deadline = time.monotonic() + pause
                while not stop.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(min(0.1, deadline - time.monotonic()))
        finally:
            await self._publisher.close()
            try:
                self.lease.release()
            except sa.exc.SQLAlchemyError:
                log.warning("relay lease not released: it ends with its term")

    async def step(self) -> float:
        """One round: hold the lease, publish what is unpublished; the pause before the next round."""
        try:
            if not self.lease.hold():
                return STANDBY_SECONDS
            batch = unpublished(self._engine, self._settings.events_relay_batch)
            if not self._publisher.connected:
                self._attempt()
                await self._publisher.open()
            if not batch:
                self._succeeded()
                return self._settings.events_relay_poll_seconds
            await self._publish(batch)
            self._succeeded()
            return 0.0 if len(batch) == self._settings.events_relay_batch else self._settings.events_relay_poll_seconds
        except BrokerUnavailable as exc:
            metrics.event_publish_failure(exc.reason)
            return self._backoff("broker unavailable", exc)
        except sa.exc.SQLAlchemyError as exc:  # the database may be down: the same backoff, nothing lost
            return self._backoff("database unavailable", exc)
        except Exception as exc:  # anything else: logged, and the relay carries on (it must not die quietly)
            log.exception("relay round failed")
            metrics.event_publish_failure("error")
            return self._backoff("relay round failed", exc)

    async def _publish(self, batch: list[Event]) -> None:
        """Publish in position order, each after the previous one's ack, then mark what was acknowledged.
        Stops early when the lease is no longer safely ours."""
        done: list[int] = []
        try:
            for event in batch:
                if not self.lease.held() and not self.lease.hold():
                    break
                self._attempt()
                order_id = format_order_id(event.order_id)
                event_id = f"{order_id}:{event.sequence}"
                duplicate = await self._publisher.publish(event_id, order_id, message(event), event.type)
                metrics.event_published(duplicate)
                log.debug("event published", extra={"fields": {"event_id": event_id, "duplicate": duplicate}})
                self._failpoints.hit("relay_after_publish")
                done.append(event.position)
        finally:
            if done:
                self.lease.mark_published(done)

    def _attempt(self) -> None:
        if self._failed:
            metrics.event_publish_retry()
            self._failed = False

    def _succeeded(self) -> None:
        if self._delay:
            log.info("relay publishing again")
        self._delay = 0.0

    def _backoff(self, what: str, exc: Exception) -> float:
        self._failed = True
        self._delay = min(BACKOFF_MAX, self._delay * 2 or BACKOFF_FIRST)
        log.warning(what, extra={"fields": {"error": str(exc)[:300], "retry_in": round(self._delay, 2)}})
        return self._delay * random.uniform(0.8, 1.0)
