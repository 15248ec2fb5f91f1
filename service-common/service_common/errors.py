"""One error shape for every response: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from service_common.domain import (
    ConflictError,
    DomainError,
    GoneError,
    InvalidError,
    NotFoundError,
    UnavailableError,
)
from service_common.jsonio import dumps, json_response

log = logging.getLogger(__name__)

# Werkzeug's names for the statuses we answer, as stable machine-readable codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error answered to the client as it is; raised anywhere below a view."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, **self.extra)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(error_body(code, message), status, headers)


# The one table from what the domain says to how it is said: every DomainError is answered by its kind.
_DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    GoneError: 410,
    InvalidError: 422,
    UnavailableError: 503,
}


def domain_status(exc: DomainError) -> int:
    for kind, status in _DOMAIN_STATUS.items():
        if isinstance(exc, kind):
            return status
    raise TypeError(f"{type(exc).__name__} is no kind of DomainError this table knows")


def domain_headers(exc: DomainError) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}


def domain_body(exc: DomainError) -> bytes:
    """The JSON bytes a domain error is answered with (also what the order saga stores for replays)."""
    return dumps(domain_error_json(exc))


def domain_error_json(exc: DomainError) -> dict[str, Any]:
    """The body a domain error is answered with, as data: `{"error": {"code", "message", …}}`."""
    return error_body(exc.code, exc.message, **exc.details)


def _is_connection_problem(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return json_response(exc.body(), exc.status, exc.headers)

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError) -> Response:
        return Response(
            domain_body(exc), status=domain_status(exc), headers=domain_headers(exc), mimetype="application/json"
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers: dict[str, str] = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        message = exc.description or exc.name
        return error_response(status, _HTTP_CODES.get(status, "http_error"), message, headers)

    @app.errorhandler(PoolTimeoutError)
    def _pool_exhausted(exc: PoolTimeoutError) -> Response:
        log.warning("database pool exhausted: %s", exc)
        return error_response(503, "database_unavailable", "The database is busy; retry shortly.", {"Retry-After": "1"})

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError) -> Response:
        # Lost connections, timeouts and lock waits are the database's state, not the client's fault.
        if _is_connection_problem(exc):
            log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
            return error_response(
                503, "database_unavailable", "The database is unavailable; retry shortly.", {"Retry-After": "1"}
            )
        log.exception("database error")
        return error_response(500, "internal_error", "An internal error occurred.")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "An internal error occurred.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. insufficient_stock.")
    message: str = Field(description="What went wrong, for people.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail
