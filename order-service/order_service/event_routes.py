"""GET /events: the order events feed (docs/events.md), for the admin token or the read-only events token."""

from __future__ import annotations

import threading
import time

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy.engine import Engine

from order_service import events, schemas
from order_service.settings import Settings
from service_common.auth import require_token
from service_common.errors import ApiError
from service_common.front import ENVIRON_KEY, RUN_AGAIN_HEADER, FrontRun
from service_common.jsonio import json_response
from service_common.openapi import errors, operation_id

_EVENTS = Tag(name="events", description="Order events (admin or events token)")

EVENTS_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "The events token (`EVENTS_TOKEN`, or `EVENTS_TOKEN_NEXT` while rotating): reads the event "
    "feed and nothing else.",
}
EVENTS_OR_ADMIN: list[dict[str, list[str]]] = [{"eventsToken": []}, {"adminToken": []}]


def events_blueprint(engine: Engine, settings: Settings) -> APIBlueprint:
    bp = APIBlueprint("events", __name__, operation_id_callback=operation_id)
    # At most EVENTS_MAX_WAITERS long polls wait in one process (docs/events.md): in the front's event loop
    # (counted there), or, without the front, each holding a thread (counted here).
    waiters = threading.BoundedSemaphore(settings.events_max_waiters) if settings.events_max_waiters else None

    @bp.get(
        "/events",
        tags=[_EVENTS],
        security=EVENTS_OR_ADMIN,
        responses={
            200: schemas.EventPage,
            **errors(
                {
                    410: "Events after this cursor were pruned (`gone`, with `oldest`: the cursor retention "
                    "reached); read again without `after` and reconcile.",
                    422: "A query parameter breaks the schema (`validation_error`), or `after` is not a cursor "
                    "this feed gave out (`invalid_cursor`).",
                    429: "Too many long polls wait on this server process (`too_many_waiters`); retry after "
                    "`Retry-After` seconds, or poll without `wait`.",
                },
                auth=True,
            ),
        },
    )
    @require_token("events", "admin")
    def read_events(query: schemas.EventQuery) -> Response:
        """Read order events (events or admin token)

        Every `order.confirmed`, `order.cancelled` and `order.fulfilled`, oldest first, from the cursor
        `after` (the `next` of the page before; without it, from the oldest event kept). The same cursor
        answers the same events, and none is ever skipped. With `wait`, an empty answer waits up to that
        many seconds (at most 20) for an event.
        """
        after = events.Cursor.decode(query.after) if query.after is not None else None
        page = events.read_page(engine, after, query.limit)
        if not page.events and query.wait > 0:
            run = request.environ.get(ENVIRON_KEY)
            if isinstance(run, FrontRun):
                # The front can run this request again: with nothing new yet, it waits there, in its event
                # loop, holding no thread, and runs it again in POLL_SECONDS; the last run answers the page.
                left = run.since + min(query.wait, events.MAX_WAIT_SECONDS) - time.monotonic()
                if left > 0:
                    if not run.rerun and run.waiting() >= settings.events_max_waiters:
                        raise _too_many_waiters(settings)
                    return Response(status=204, headers={RUN_AGAIN_HEADER: f"{min(events.POLL_SECONDS, left):.3f}"})
            else:
                # No front (the WSGI test client, another server): the wait holds this thread.
                if waiters is None or not waiters.acquire(blocking=False):
                    raise _too_many_waiters(settings)
                try:
                    page = events.wait_for_page(engine, page.next, query.limit, query.wait)
                finally:
                    waiters.release()
        return json_response({"events": [e.as_json() for e in page.events], "next": page.next.encode()})

    return bp


def _too_many_waiters(settings: Settings) -> ApiError:
    return ApiError(
        429,
        "too_many_waiters",
        f"At most {settings.events_max_waiters} long polls wait on one server process; "
        "retry shortly or poll without `wait`.",
        headers={"Retry-After": "1"},
    )
