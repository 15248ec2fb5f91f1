"""Schemathesis checks of our own (loaded through `hooks` in tests/schemathesis.toml).

Two built-in checks are replaced by stricter-where-it-matters versions of themselves: the built-in runs
first, and only the answers listed here, each with its reason, are let through. A third checks that the
document's `security` is what the services enforce. docs/api-testing.md says the same in prose.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    status_code_conformance,
)

from service_common.settings import ServiceSettings

# The server's front refuses a request line over MAX_REQUEST_LINE (8192 bytes by default) with a JSON 414,
# before the app sees the request: a server limit any URL can hit, like the 405 any path can answer, so it
# is in no operation's list. Only that 414 is let through, and only for a request line that long.
MAX_REQUEST_LINE = ServiceSettings.model_fields["max_request_line"].default


@schemathesis.check
def documented_status(ctx: Any, response: Any, case: Any) -> bool | None:
    """status_code_conformance, but for the front's 414 on an over-long request line."""
    if response.status_code == 414 and _request_line_length(response) > MAX_REQUEST_LINE:
        return None
    return status_code_conformance(ctx, response, case)


@schemathesis.check
def invalid_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """negative_data_rejection (schema-violating data gets a 4xx from its list), but for the front's 414 on
    an over-long request line: refused too, only by the server before the app (see MAX_REQUEST_LINE)."""
    if response.status_code == 414 and _request_line_length(response) > MAX_REQUEST_LINE:
        return None
    return negative_data_rejection(ctx, response, case)


# The refusals of schema-valid requests that a JSON Schema cannot express: (operation, status, error
# code, message). Nothing else that the document calls valid may be refused.
ALLOWED_REFUSALS: list[tuple[str, int, str, str]] = [
    # JSON Schema's "integer" admits 2.0 and integers past 64 bits; the services take integer literals
    # only (strict parsing, pinned by tests/test_bad_input.py), and the JSON parser reads a longer one as
    # a float.
    # (A cart names each line that sent one; a batch of reserves, each reserve.)
    (
        r".*",
        422,
        "validation_error",
        r"^(((reservations\.\d+\.)?(items\.\d+\.)?quantity: Input should be a valid integer)(; |$))+$",
    ),
    # A product named twice among a cart's lines: JSON Schema's uniqueItems compares whole lines only.
    (
        r"^POST /(orders|inventory/(reserve|reserve/batch|check))$",
        422,
        "validation_error",
        r"items: each product at most once",
    ),
    # A generator makes multipleOf 0.01 out of binary floats (0.29000000000000004); the price is checked
    # exactly, as a decimal, and such a number is not a multiple of 0.01.
    # The console's PATCH /admin/products/{product_id} passes the price on to inventory, which says the same.
    (r"^(POST|PATCH) /(inventory|admin/products)", 422, "validation_error", r"^price: at most two decimal places$"),
    # name and price are each optional and nullable; an update that gives neither (or only nulls) is
    # refused, which "at least one non-null of" in JSON Schema would only obscure.
    (r"^PATCH /(inventory|admin/products)/\{product_id\}$", 422, "validation_error", r"^body: give name or price$"),
    # The console's restock is inventory's: its MAX_RESTOCK is an inventory setting that the order service's
    # document cannot know, so inventory's refusal of a larger quantity is passed on.
    (r"^POST /admin/products/\{product_id\}/restock$", 422, "validation_error", r"^quantity: must be at most \d+$"),
    # Idempotency-Key state, not schema: the same key with another body is refused.
    (r"^POST /orders$", 422, "idempotency_key_reused", r""),
    # A feed cursor is opaque: the document states its alphabet and length, not which strings the feed gave out.
    (r"^GET /events$", 422, "invalid_cursor", r""),
]


@schemathesis.check
def schema_valid_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """positive_data_acceptance (a schema-valid request gets 2xx, or 404 / 409 / 401 as the built-in
    allows), but for the refusals above."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except AssertionError:
        label = f"{case.method.upper()} {case.path}"
        code, message = _error(response)
        for operation, status, error_code, text in ALLOWED_REFUSALS:
            if (
                response.status_code == status
                and code == error_code
                and re.search(operation, label)
                and re.search(text, message)
            ):
                return None
        raise


@schemathesis.check
def documented_token_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request that carries a token (the one its operation's document names: auth is configured per
    security scheme) is never answered 401, so the document's `security` is what the service enforces.
    ignored_auth checks the other half: without a token, 401."""
    sent = response.request.headers.get("Authorization")
    ours = {f"Bearer {os.environ[name]}" for name in ("SERVICE_TOKEN", "ADMIN_TOKEN") if os.environ.get(name)}
    if response.status_code == 401 and sent in ours:
        raise AssertionError(f"Answered 401 to a request carrying the token its document asks for: {response.text}")
    return None


def _error(response: Any) -> tuple[str, str]:
    try:
        error = json.loads(response.content)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "", ""


def _request_line_length(response: Any) -> int:
    request = response.request
    return len(f"{request.method} {request.path_url} HTTP/1.1")
