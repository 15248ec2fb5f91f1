"""Structured JSON logs on stdout: one line per request, with its request id."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson
from flask import Flask, Response, g, has_request_context, request

from service_common.front import RUN_AGAIN_HEADER

REQUEST_ID_HEADER = "X-Request-ID"
_MAX_REQUEST_ID = 128


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
        elif has_request_context() and g.get("request_id"):
            entry["request_id"] = g.request_id
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
    return g.get("request_id") if has_request_context() else None


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= _MAX_REQUEST_ID and value.isascii() and value.isprintable()


def _new_request_id() -> str:
    return os.urandom(16).hex()  # as uuid4().hex: 32 random hex digits, without building a UUID


def register_request_logging(app: Flask, service: str) -> None:
    access = logging.getLogger(f"{service}.access")

    @app.before_request
    def _start() -> None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _valid_request_id(given) else _new_request_id()
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or _new_request_id()
        response.headers[REQUEST_ID_HEADER] = request_id
        if not access.isEnabledFor(logging.INFO):  # benchmarks and quiet deployments: no line to build
            return response
        if RUN_AGAIN_HEADER in response.headers:  # not an answer: the front runs it again (front.py)
            return response
        started = g.get("started")
        fields: dict[str, Any] = {
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "request_id": request_id,
        }
        order_id = g.get("order_id")
        if order_id:
            fields["order_id"] = order_id
        access.info("request", extra={"fields": fields})
        return response
