"""What the domain (the saga, storage) raises when it refuses something. It names what happened and never
how it is said over HTTP: service_common.errors holds the one table from these kinds to statuses, so both
services refuse the same way."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal: a stable machine-readable code, a message for people, and details for the client."""

    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: int | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # Seconds after which a retry may succeed; None when a retry would be refused again.
        self.retry_after = retry_after
        self.details = details


class NotFoundError(DomainError):
    """What the request names does not exist."""


class ConflictError(DomainError):
    """The request conflicts with the current state."""


class GoneError(DomainError):
    """What the request names existed once and is gone for good (pruned); asking again will not help."""

    code = "gone"


class InvalidError(DomainError):
    """The request is well-formed but asks for something not allowed."""

    code = "validation_error"


class UnavailableError(DomainError):
    """Something this depends on is unavailable now; a retry may succeed."""
