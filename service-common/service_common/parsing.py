"""Strict request parsing, before any view runs.

Order of checks: size (413), media type (415), JSON syntax and shape (400); the pydantic models behind
each route then answer 422 for a well-formed body that breaks the schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import orjson
from flask import Flask, Response, current_app, request
from pydantic import StringConstraints, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from service_common.errors import ApiError, error_response
from service_common.settings import MAX_BODY_BYTES

# Identifiers: product, customer and order ids share one alphabet.
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_identifier(value: str) -> bool:
    return _ID_RE.fullmatch(value) is not None


def bodyless(view: Any) -> Any:
    """Mark a POST view that takes no body, so an empty request is not refused."""
    view.__bodyless__ = True
    return view


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _parse_json_body() -> None:
    if request.method not in _BODY_METHODS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if not _has_body():
        if request.method in ("POST", "PUT", "PATCH") and view is not None and not getattr(view, "__bodyless__", False):
            raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
        return
    limit = current_app.config["MAX_CONTENT_LENGTH"] - 1
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "The request body must be sent as application/json.")
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raw = b"x" * (limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The request body is not valid JSON: {_reason(exc)}.") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    # Prime werkzeug's JSON cache so the routing layer validates exactly what was parsed here.
    request._cached_json = (value, value)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The request body exceeds {limit} bytes.")


def _reason(exc: orjson.JSONDecodeError) -> str:
    text = str(exc).split(":", 1)[0]
    return text[:120]


def validation_error_response(exc: ValidationError) -> Response:
    """422 for a well-formed request that breaks its schema: name the first problems, never echo input."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append(f"{where}: {err['msg']}")
    return error_response(422, "validation_error", "; ".join(problems) or "The request is not valid.")


def register_request_parsing(app: Flask, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    # One byte over the limit: werkzeug stops a chunked body at the limit without saying it was cut,
    # so reading limit + 1 bytes is how an oversized chunked body shows itself.
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes + 1
    app.before_request(_parse_json_body)
