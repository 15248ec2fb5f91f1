"""Optional OpenTelemetry tracing across both services (W3C `traceparent` in and out).

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; when off nothing is imported and nothing is wrapped,
so it costs nothing. When on, each server worker exports its spans over OTLP/HTTP in batches:
incoming requests (Flask) and the calls to inventory (client_span around the order service's own HTTP
pool; urllib3 for anything else), so one order is one trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_enabled = False  # set by configure_tracing in a process whose app traces


def configure_tracing(app: Any, service: str, endpoint: str | None) -> None:
    if not endpoint:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
    trace.set_tracer_provider(provider)
    FlaskInstrumentor().instrument_app(app, excluded_urls="/health,/health/live,/health/ready,/metrics")
    URLLib3Instrumentor().instrument()
    global _enabled
    _enabled = True


@contextlib.contextmanager
def client_span(method: str, url: str, headers: dict[str, str]) -> Iterator[Any]:
    """An outgoing call's span (kind CLIENT, named by its method as urllib3's instrumentation names it), whose
    context goes out in `headers` (W3C traceparent); None, and nothing done, while tracing is off."""
    if not _enabled:
        yield None
        return
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer("service_common.tracing")
    attributes = {"http.method": method, "http.url": url}
    with tracer.start_as_current_span(method, kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
        propagate.inject(headers)
        yield span
