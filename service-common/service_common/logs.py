"""Structured JSON logs on stdout: one line per request, with its request id.

Each request's id and start time are taken when Flask makes the request object (ServiceRequest, the
app's request_class), not in a before-request hook: no hook to run and no `g` to look up, and every
later step (hooks, error handlers, the inventory client, log lines) finds them on the request."""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from typing import Any

import orjson
from flask import Flask, Request, Response, g, has_request_context, request

from service_common.front import asks_to_run_again

REQUEST_ID_HEADER = "X-Request-ID"
# The header's WSGI environ key, as werkzeug's EnvironHeaders reads it: HTTP_X_REQUEST_ID.
_REQUEST_ID_KEY = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
_MAX_REQUEST_ID = 128


class ServiceRequest(Request):
    """A Flask request with its id (the caller's X-Request-ID when it is one, else a new one) and its
    start time (time.perf_counter(): the access log's duration and the latency metric)."""

    request_id: str
    started: float

    def __init__(self, environ: dict[str, Any], populate_request: bool = True, shallow: bool = False) -> None:
        super().__init__(environ, populate_request, shallow)
        given = environ.get(_REQUEST_ID_KEY, "")
        self.request_id = given if _valid_request_id(given) else _new_request_id()
        self.started = time.perf_counter()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        else:
            request_id = current_request_id()
            if request_id:
                entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def current_request_id() -> str | None:
    """The id of the request being served (None outside one, or in an app without ServiceRequest)."""
    return getattr(request, "request_id", None) if has_request_context() else None


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= _MAX_REQUEST_ID and value.isascii() and value.isprintable()


# New request ids: 128 bits from a generator of this process's own, seeded from os.urandom (and seeded
# again in a forked child, so no two processes share a sequence). Not os.urandom itself: its getrandom()
# call lets go of the GIL, and with every app thread busy that hands the interpreter to another thread and
# back on each request (on a product read with 8 app threads: ~4 context switches and ~30 us of CPU more).
# An id only names a request in logs and traces; knowing the next one gives no one anything.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def _new_request_id() -> str:
    return f"{_ids.getrandbits(128):032x}"  # as uuid4().hex: 32 hex digits


def register_request_logging(app: Flask, service: str) -> None:
    """Give each request an id and a start time (ServiceRequest), answer the id in X-Request-ID, and log
    one access line per answer at INFO."""
    access = logging.getLogger(f"{service}.access")
    app.request_class = ServiceRequest

    @app.after_request
    def _finish(response: Response) -> Response:
        # One look-up of the request behind Flask's proxy for all that follows.
        served: Request = request._get_current_object()  # type: ignore[attr-defined]  # werkzeug's LocalProxy
        request_id = getattr(served, "request_id", None) or _new_request_id()
        response.headers[REQUEST_ID_HEADER] = request_id
        if not access.isEnabledFor(logging.INFO):  # benchmarks and quiet deployments: no line to build
            return response
        if asks_to_run_again(response.headers):  # not an answer: the front runs it again (front.py)
            return response
        started = getattr(served, "started", None)
        rule = served.url_rule
        fields: dict[str, Any] = {
            "method": served.method,
            "route": rule.rule if rule else None,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "request_id": request_id,
        }
        order_id = g.get("order_id")
        if order_id:
            fields["order_id"] = order_id
        access.info("request", extra={"fields": fields})
        return response
