"""Optional tracing: with OTEL_EXPORTER_OTLP_ENDPOINT set, one order is one trace across both services,
continuing the caller's W3C traceparent. The collector here is a real OTLP/HTTP endpoint on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from local.processes import free_port, wait_until
from tests.stack_client import Api
from tests.topology import Stack, stack

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Collector:
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []  # (service, trace id, span name)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            collector.spans.append((attrs.get("service.name", ""), span.trace_id.hex(), span.name))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


@pytest.fixture(scope="module")
def traced_stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Stack]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    with stack(Path(tmp_path_factory.mktemp("tracing")), "sqlite", inventory_env=env, order_env=env) as s:
        yield s


@pytest.fixture
def traced_api(traced_stack: Stack) -> Api:
    return Api.of(traced_stack)


def test_an_order_is_one_trace_across_both_services(traced_api: Api, collector: Collector) -> None:
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    r = requests.post(
        f"{traced_api.order_url}/orders",
        json={"product_id": "P002", "quantity": 1},
        headers={"traceparent": traceparent},
        timeout=10,
    )
    assert r.status_code == 201

    def spans_of_trace() -> set[tuple[str, str]]:
        return {(service, name) for service, trace_id, name in collector.spans if trace_id == TRACE_ID}

    expected = {("order-service", "POST /orders"), ("inventory-service", "POST /inventory/reserve")}
    wait_until(lambda: expected <= spans_of_trace(), timeout=20, what="both services' spans of the trace")
    # The call between them is traced too (the order service's client span).
    assert ("order-service", "POST") in spans_of_trace()
