"""The part of each app factory both services share: JSON, parsing, errors, logging, headers, health."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Response, redirect, request
from flask_openapi3 import Info, OpenAPI

from service_common.auth import register_auth
from service_common.errors import ErrorResponse, register_error_handlers
from service_common.health import health_blueprint
from service_common.jsonio import OrjsonProvider, json_response
from service_common.logs import register_request_logging
from service_common.metrics import register_metrics
from service_common.openapi import ServiceOpenAPI
from service_common.parsing import register_request_parsing, validation_error_response
from service_common.settings import MAX_BODY_BYTES, ServiceSettings
from service_common.tracing import configure_tracing

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_KIB = MAX_BODY_BYTES // 1024
_ERRORS = f"""

Every error is `{{"error": {{"code": "...", "message": "..."}}}}` (ErrorResponse) with the status that fits:
400 a body that is not a JSON object, 401 a missing or wrong bearer token, 404 not found, 405 a method the
path does not take (with `Allow`), 409 a conflict with the current state, 413 a body over {_KIB} KiB, 415 a
body not sent as `application/json`, 422 a request that breaks the schema, 503 the database or a service
it depends on is unavailable (with `Retry-After`). Each operation lists the ones it can answer.
Health probes (`/health`, `/health/live`, `/health/ready`) and Prometheus metrics (`/metrics`) are
served too, outside this document."""


def create_base_app(
    service: str,
    title: str,
    settings: ServiceSettings,
    ready_checks: Callable[[], dict[str, str]],
    collectors: Iterable[Any] = (),
    *,
    description: str = "",
    security_schemes: dict[str, Any] | None = None,
) -> ServiceOpenAPI:
    app = ServiceOpenAPI(
        service,
        info=Info(title=title, version="1.0.0", description=description + _ERRORS),
        security_schemes=security_schemes,
        doc_prefix="/docs",
        doc_url="/openapi.json",
        validation_error_status=422,
        # Errors are one shape: the document names ErrorResponse for the 422 that pydantic answers.
        validation_error_model=ErrorResponse,
        validation_error_callback=validation_error_response,
    )
    app.json = OrjsonProvider(app)
    app.config["TOKENS"] = settings.tokens()
    app.config["SETTINGS"] = settings
    # Logging first, so even a request refused by parsing has a request id and a log line.
    register_request_logging(app, service)
    register_auth(app)
    register_request_parsing(app, settings.max_body_bytes)
    register_error_handlers(app)
    register_security_headers(app)
    register_metrics(app, service, collectors, _worker_slot(service, settings))
    app.register_blueprint(health_blueprint(ready_checks, settings.drain_flag(service)))
    app.add_url_rule("/openapi.json", "openapi_document", lambda: json_response(app.api_doc))
    # Interactive docs from flask-openapi3-swagger's bundled assets (no CDN): /docs and /docs/ open Swagger
    # UI, not flask-openapi3's picker page (whose only choice would be Swagger).
    app.add_url_rule("/docs", "docs", lambda: redirect("/docs/swagger"), strict_slashes=True)
    app.view_functions["openapi.openapi"] = lambda: redirect("/docs/swagger")
    configure_tracing(app, service, settings.otel_exporter_otlp_endpoint)
    return app


def _worker_slot(service: str, settings: ServiceSettings) -> str:
    """This server worker's slot for the per-worker request figure ("0" outside a multi-worker server)."""
    import os

    from service_common.metrics import worker_slot

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return "0"
    return worker_slot(settings.scratch_path(service) / "workers", settings.web_concurrency)


def register_security_headers(app: OpenAPI) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.method in _WRITE_METHODS:
            response.headers["Cache-Control"] = "no-store"
        return response
