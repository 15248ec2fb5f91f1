"""Who is calling the order API, and which orders they may see.

CUSTOMER_AUTH=none (the default, as in the seed): anyone may act on any order; `customer_id` comes from
the body. CUSTOMER_AUTH=jwt: a customer is the `sub` of a verified JWT (signature with a pinned
asymmetric algorithm, expiry and audience checked); they act only on their own orders, and others'
look like they do not exist (404). The admin token sees and acts on all orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app

from order_service.settings import Settings
from service_common.auth import bearer_token, token_matches
from service_common.errors import ApiError
from service_common.parsing import is_identifier

ANONYMOUS_SCOPE = "anonymous"


@dataclass(frozen=True)
class Caller:
    customer_id: str | None  # None: may act on every order (no customer auth, or the admin)

    @property
    def idempotency_scope(self) -> str:
        return f"customer:{self.customer_id}" if self.customer_id else ANONYMOUS_SCOPE

    def may_see(self, order_customer: str) -> bool:
        return self.customer_id is None or self.customer_id == order_customer


class CustomerAuth:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.customer_auth == "jwt"
        self.settings = settings
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.jwt_public_key_file:
            self._key = settings.jwt_public_key_file.read_text()
        elif settings.jwt_jwks_file:
            self._jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())

    def caller(self) -> Caller:
        if not self.enabled:
            return Caller(None)
        token = bearer_token()
        if token_matches(token, current_app.config["TOKENS"]["admin"]):
            return Caller(None)
        if not token:
            raise _unauthorized("A customer bearer token is required.")
        return Caller(self._verify(token))

    def _verify(self, token: str) -> str:
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                self._signing_key(token),
                algorithms=list(s.jwt_algorithms),
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=s.jwt_leeway_seconds,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"The customer token is not valid ({type(exc).__name__}).") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not is_identifier(subject):
            raise _unauthorized("The customer token's subject is not a valid customer id.")
        return subject

    def _signing_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._jwks.keys:
            if key.key_id == kid:
                return key.key
        raise jwt.InvalidKeyError("no key with that kid")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="customers"'})
