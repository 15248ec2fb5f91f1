"""Bearer tokens for internal and admin endpoints.

Each token setting holds a current and an optional next value, so a token can be rotated without downtime:
deploy with NEXT set to the new value, switch callers, then make it the current one.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import Flask, request

from service_common.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: str | None, accepted: Sequence[str | None]) -> bool:
    if not given:
        return False
    given_bytes = given.encode()
    # Compare against every accepted token so the time taken does not say which one was close.
    ok = False
    for candidate in accepted:
        if candidate:
            ok |= hmac.compare_digest(given_bytes, candidate.encode())
    return ok


def require_token(*kinds: str) -> Callable[[F], F]:
    """Mark a view as needing one of the named tokens ("service", "admin").

    The check runs in a before-request hook (register_auth), ahead of body parsing, so a caller without
    a token learns nothing about the endpoint but 401.
    """

    def decorator(view: F) -> F:
        # A mark on the function object itself, read back by _enforce_tokens; no type declares it.
        view.__required_tokens__ = kinds  # type: ignore[attr-defined]
        return view

    return decorator


def _enforce_tokens(app: Flask) -> None:
    view = app.view_functions.get(request.endpoint or "")
    kinds = getattr(view, "__required_tokens__", None)
    if not kinds:
        return
    tokens: dict[str, tuple[str | None, ...]] = app.config["TOKENS"]
    accepted = [t for kind in kinds for t in tokens.get(kind, ())]
    if not token_matches(bearer_token(), accepted):
        raise ApiError(
            401,
            "unauthorized",
            "A valid bearer token is required for this endpoint.",
            headers={"WWW-Authenticate": 'Bearer realm="internal"'},
        )


def register_auth(app: Flask) -> None:
    # The app itself, not Flask's current_app proxy: one look-up less on every request.
    app.before_request(lambda: _enforce_tokens(app))
