"""Optional OpenTelemetry tracing across both services (W3C `traceparent` in and out).

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; when off nothing is imported and nothing is wrapped,
so it costs nothing. When on, each server worker exports its spans over OTLP/HTTP in batches:
incoming requests (Flask) and the calls to inventory (client_span()), so one order is one trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_tracer: Any = None  # the OpenTelemetry tracer once tracing is on


def configure_tracing(app: Any, service: str, endpoint: str | None) -> None:
    global _tracer
    if not endpoint:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
    trace.set_tracer_provider(provider)
    FlaskInstrumentor().instrument_app(app, excluded_urls="/health,/health/live,/health/ready,/metrics")
    _tracer = trace.get_tracer(__name__)


def client_span(method: str, url: str, headers: dict[str, str]) -> contextlib.AbstractContextManager[None]:
    """Around an outgoing HTTP call: a CLIENT span named by its method, whose `traceparent` is put in
    `headers` so the callee continues the trace. Nothing at all when tracing is off."""
    if _tracer is None:
        return contextlib.nullcontext()
    return _traced_call(method, url, headers)


@contextlib.contextmanager
def _traced_call(method: str, url: str, headers: dict[str, str]) -> Iterator[None]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    attributes = {"http.request.method": method, "url.full": url}
    with _tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes):
        propagate.inject(headers)
        yield
