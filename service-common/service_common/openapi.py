"""The parts of each service's OpenAPI document that both share: the bearer schemes, the error responses
(every one an ErrorResponse body, with the headers it always carries), and an app class whose document
lists exactly the statuses each operation declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from flask_openapi3 import OpenAPI
from pydantic import WithJsonSchema

from service_common.limits import LimitedModel
from service_common.settings import MAX_BODY_BYTES

_REF = "#/components/schemas/"
_ERROR_REF = _REF + "ErrorResponse"

# A time on the wire: RFC 3339 in UTC (service_common.storage.rfc3339). Response models only.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]

# --- security ------------------------------------------------------------------------------------------------

SERVICE_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "The service token (`SERVICE_TOKEN`, or `SERVICE_TOKEN_NEXT` while rotating): calls "
    "between the services.",
}
ADMIN_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "The admin token (`ADMIN_TOKEN`, or `ADMIN_TOKEN_NEXT` while rotating): operators.",
}
CUSTOMER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "A customer's JWT from the identity provider (CUSTOMER_AUTH=jwt): `sub` is the customer id.",
}

# Security requirements for the `security=` of a route: any one entry of the list suffices.
SERVICE: list[dict[str, list[str]]] = [{"serviceToken": []}]
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
SERVICE_OR_ADMIN: list[dict[str, list[str]]] = [{"serviceToken": []}, {"adminToken": []}]

# --- responses -----------------------------------------------------------------------------------------------

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "The bearer challenge.",
        "required": True,
        "schema": {"type": "string"},
    }
}

INVALID_JSON = "The body is not a JSON object (`invalid_json`)."
UNAUTHORIZED = "The bearer token is missing or not accepted here (`unauthorized`)."
TOO_LARGE = f"The body exceeds {MAX_BODY_BYTES // 1024} KiB (`payload_too_large`)."
NOT_JSON = "The body was not sent as `application/json` (`unsupported_media_type`)."
INVALID_BODY = "The body breaks the schema (`validation_error`)."
UNAVAILABLE = "The database is unavailable or busy (`database_unavailable`); retry after `Retry-After` seconds."
# DELETE and a body-less POST take no body, but one that is sent is still held to the same rules.
STRAY_BODY = " A body is not expected; one that is sent must still be one."


def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """One documented error status: an ErrorResponse body with this description."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
    }
    if headers:
        response["headers"] = headers
    return response


def described(schema: str, description: str) -> dict[str, Any]:
    """A success (or 409) response whose body is the named component schema, with its own description.
    The schema must also appear as a model elsewhere in the document, which registers it."""
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


def errors(
    described: dict[int, str] | None = None,
    *,
    body: bool = False,
    stray_body: bool = False,
    auth: bool = False,
    unavailable: str = UNAVAILABLE,
) -> dict[str | int, Any]:
    """The error statuses of one operation.

    body: it takes a JSON body (400, 413, 415, 422). stray_body: it takes none, but one sent anyway is
    parsed like any other (400, 413, 415). auth: it needs a bearer token (401). Every operation reads
    the database, so 503 is always there. `described` adds or overrides statuses with their own text.
    """
    out: dict[int, Any] = {}
    if body or stray_body:
        suffix = STRAY_BODY if stray_body else ""
        out[400] = error(INVALID_JSON + suffix)
        out[413] = error(TOO_LARGE + suffix)
        out[415] = error(NOT_JSON + suffix)
    if body:
        out[422] = error(INVALID_BODY)
    if auth:
        out[401] = error(UNAUTHORIZED, _WWW_AUTHENTICATE)
    out[503] = error(unavailable, RETRY_AFTER)
    for status, text in (described or {}).items():
        out[status] = error(text, RETRY_AFTER if status == 503 else _WWW_AUTHENTICATE if status == 401 else None)
    return {status: out[status] for status in sorted(out)}


def operation_id(*, name: str, path: str, method: str) -> str:
    """operationId = the view's name (unique within a service): `create_order`, `reserve`."""
    return name


class ServiceOpenAPI(OpenAPI):
    """flask-openapi3 adds a 422 to every operation that does not declare one; ours declare exactly the
    statuses they can answer, so that blanket 422 is taken out again. Docstrings stay Markdown. Limits
    that come from settings (service_common.limits.AtMost) are written into the document as configured."""

    # Functions Flask was told are plain `def`s (views and hooks): see ensure_sync.
    _sync_functions: frozenset[Callable[..., Any]] = frozenset()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks inspect whether each hook and the view is a coroutine function, 8 times a request, and
        # the answer never changes: a function found plain once is returned as it is. (A set of at most a few
        # hundred functions: views and hooks, not bound methods made per call.)
        if func in self._sync_functions:
            return func
        found = super().ensure_sync(func)
        if found is func and len(self._sync_functions) < 512:
            self._sync_functions = self._sync_functions | {func}
        return found

    def generate_spec_json(self) -> None:
        OpenAPI.generate_spec_json(self)
        package = self.import_name.replace("-", "_")  # "order-service": the order_service package's models
        _state_limits(self.spec_json["components"]["schemas"], self.config["SETTINGS"], package)
        for path_item in self.spec_json["paths"].values():
            for operation in path_item.values():
                # flask-openapi3 joins a docstring's lines with <br/>; the description is Markdown, where
                # a docstring's own line breaks and blank lines already mean what they should.
                if "description" in operation:
                    operation["description"] = operation["description"].replace("<br/>", "\n").strip()
                responses = operation.get("responses", {})
                added = responses.get(self.validation_error_status, {})
                schema = added.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("type") == "array":
                    del responses[self.validation_error_status]


def _state_limits(schemas: dict[str, Any], settings: object, package: str) -> None:
    """Each AtMost field's `maximum` in this service's models: the value of its setting in the running app."""
    for (owner, model), fields in LimitedModel.bounded.items():
        if owner == package and model in schemas:
            for field, setting in fields.items():
                schema = schemas[model]["properties"][field]
                is_list = schema.get("type") == "array" or any(
                    s.get("type") == "array" for s in schema.get("anyOf", [])
                )
                schema["maxItems" if is_list else "maximum"] = getattr(settings, setting)
