"""The event feed (GET /events): the outbox (storage.order_events) read oldest first from a cursor, never
skipping an event (docs/events.md).

A feed that hands out positions must never move a reader past an event that can still commit below it:
- SQLite has one writer at a time (BEGIN IMMEDIATE), which takes its position and commits before the next
  writer begins, so positions appear in commit order: the cursor is the last position served.
- PostgreSQL hands out positions when rows are inserted, not when they commit: a transaction holding
  position 10 may commit after one holding 11 is visible. The feed is ordered by (tx, position), tx being
  the writer's transaction id, and serves only rows whose tx is below the oldest transaction still
  running (pg_snapshot_xmin of the statement's own snapshot): every writer that could still add a row
  below the cursor has finished. The cursor is (tx, position).

Cursors are opaque to clients (base64url). A cursor below the pruned watermark (what retention has
deleted, retention.py) is answered 410 `gone`: the reader would have missed events.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from order_service.domain import format_order_id
from order_service.storage import metadata, order_events
from service_common.domain import GoneError, InvalidError
from service_common.storage import UTCDateTime, reading, rfc3339

SOURCE = "/orders"
MAX_WAIT_SECONDS = 20.0
# How often a long-poll looks at the feed again while it has nothing to give.
POLL_SECONDS = 0.25
_CURSOR_VERSION = "1"
_MAX_KEY = 2**63 - 1

# One row: the greatest feed key (tx, position) of any event pruned so far (migration 0006).
event_feed_pruned = sa.Table(
    "event_feed_pruned",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tx", sa.BigInteger, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("pruned_count", sa.BigInteger, nullable=False),
    sa.Column("pruned_at", UTCDateTime, nullable=True),
)

_PG_XMIN = sa.text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


class InvalidCursor(InvalidError):
    code = "invalid_cursor"


class CursorGone(GoneError):
    code = "gone"


@dataclass(frozen=True, order=True)
class Cursor:
    """A place in the feed: after the event with this key. tx is 0 on SQLite (positions alone order it)."""

    tx: int
    position: int

    def encode(self) -> str:
        raw = f"{_CURSOR_VERSION}.{self.tx}.{self.position}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode("ascii")
            version, tx, position = raw.split(".")
            if version != _CURSOR_VERSION or not (tx.isdigit() and position.isdigit()):
                raise ValueError(raw)
            cursor = cls(int(tx), int(position))
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise InvalidCursor("after: not a cursor this feed gave out (use `next` as it was answered)") from None
        if cursor.tx > _MAX_KEY or cursor.position > _MAX_KEY:
            raise InvalidCursor("after: not a cursor this feed gave out (use `next` as it was answered)")
        return cursor


START = Cursor(0, 0)


@dataclass(frozen=True)
class Event:
    position: int
    tx: int
    order_id: int
    sequence: int
    type: str
    occurred_at: dt.datetime
    data: str  # the order as GET /orders/{id} showed it, as JSON

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.tx, self.position)

    def as_json(self) -> dict[str, Any]:
        """The event as the feed and the broker carry it (CloudEvents 1.0 attributes, plus our own)."""
        order_id = format_order_id(self.order_id)
        return {
            "specversion": "1.0",
            "id": f"{order_id}:{self.sequence}",
            "type": self.type,
            "source": SOURCE,
            "subject": order_id,
            "order_id": order_id,
            "sequence": self.sequence,
            "time": rfc3339(self.occurred_at),
            "datacontenttype": "application/json",
            "data": orjson.Fragment(self.data),  # stored as the API answered it: passed on as it is
        }


@dataclass(frozen=True)
class Page:
    events: list[Event]
    next: Cursor


def _page_query(conn: Connection, after: Cursor, limit: int) -> sa.Select[Any]:
    query = sa.select(
        order_events.c.position,
        order_events.c.tx,
        order_events.c.order_id,
        order_events.c.sequence,
        order_events.c.type,
        order_events.c.occurred_at,
        order_events.c.data,
    ).limit(limit)
    if conn.dialect.name == "postgresql":
        # One statement, so the xmin is that of the snapshot the rows are read in.
        key = sa.tuple_(order_events.c.tx, order_events.c.position)
        return query.where(key > sa.tuple_(after.tx, after.position), order_events.c.tx < _PG_XMIN).order_by(
            order_events.c.tx, order_events.c.position
        )
    return query.where(order_events.c.position > after.position).order_by(order_events.c.position)


def pruned_watermark(conn: Connection) -> Cursor:
    row = conn.execute(sa.select(event_feed_pruned.c.tx, event_feed_pruned.c.position)).first()
    return START if row is None else Cursor(row.tx, row.position)


def read_page(engine: Engine, after: Cursor | None, limit: int) -> Page:
    """Up to `limit` events after the cursor (from the oldest kept one without a cursor), oldest first.

    Raises CursorGone when events after the cursor were pruned. The watermark is read after the page: a
    prune that deleted anything the page's read could have missed has raised it by then.
    """
    with reading(engine) as conn:
        rows = conn.execute(_page_query(conn, after or START, limit)).all()
        watermark = pruned_watermark(conn)
    if after is not None and after < watermark:
        raise CursorGone(
            "Events after this cursor were pruned (EVENTS_RETENTION_HOURS); read again from the start.",
            oldest=watermark.encode(),
        )
    events = [Event(r.position, r.tx or 0, r.order_id, r.sequence, r.type, r.occurred_at, r.data) for r in rows]
    if events:
        return Page(events, events[-1].cursor)
    # Nothing new: stay where the reader is (or, from the start, past what was pruned).
    return Page([], after if after is not None else watermark)


def wait_for_page(
    engine: Engine,
    after: Cursor | None,
    limit: int,
    wait: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Page:
    """read_page, looking again every POLL_SECONDS for up to `wait` seconds while there is nothing new."""
    deadline = time.monotonic() + min(wait, MAX_WAIT_SECONDS)
    while True:
        page = read_page(engine, after, limit)
        left = deadline - time.monotonic()
        if page.events or left <= 0:
            return page
        after = page.next
        sleep(min(POLL_SECONDS, left))
