"""Optional OpenTelemetry tracing across both services (W3C `traceparent` in and out).

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; when off nothing is imported and nothing is wrapped,
so it costs nothing. When on, each server worker exports its spans over OTLP/HTTP in batches:
incoming requests (Flask) and the calls to inventory (urllib3), so one order is one trace.
"""

from __future__ import annotations

from typing import Any


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
