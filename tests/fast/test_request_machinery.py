"""What every answer carries whatever the route (service_common's request machinery): a request id (the
caller's when valid, else a new one), the JSON and security headers, an access line at INFO naming the
route, status, duration and request id, and a count and a latency in the Prometheus metrics; the id goes
on with the order service's calls to inventory. A run the front is asked to repeat is no answer: neither
logged nor counted."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from flask import Flask

from service_common.front import ENVIRON_KEY, RUN_AGAIN_HEADER, FrontRun
from tests.inprocess import Services, Templates, services

_NEW_ID = re.compile(r"^[0-9a-f]{32}$")


def _sample(app: Flask, name: str, **labels: str) -> float:
    """One sample of /metrics (0 if absent)."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric.startswith(name + "{") and ",".join(sorted(metric[len(name) + 1 : -1].split(","))) == wanted:
            return float(value)
    return 0.0


def test_a_product_read_answers_its_headers_and_a_request_id(apps: Services) -> None:
    product = apps.new_product(5, price=12.5)
    client = apps.inventory.test_client()

    given = client.get(f"/inventory/{product}", headers={"X-Request-ID": "abc-123"})
    assert given.status_code == 200
    assert given.json == {
        "product_id": product,
        "name": "Test product",
        "price": 12.5,
        "available_quantity": 5,
        "reserved_quantity": 0,
    }
    assert given.headers["Content-Type"] == "application/json"
    assert given.headers["X-Content-Type-Options"] == "nosniff"
    assert given.headers["X-Request-ID"] == "abc-123"
    assert "Cache-Control" not in given.headers  # only writes say no-store

    for headers in ({}, {"X-Request-ID": "x" * 129}, {"X-Request-ID": "tab\there"}):
        assert _NEW_ID.match(client.get(f"/inventory/{product}", headers=headers).headers["X-Request-ID"])

    missing = client.get("/inventory/no-such-product", headers={"X-Request-ID": "r-404"})
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "product_not_found")
    assert (missing.headers["X-Request-ID"], missing.headers["X-Content-Type-Options"]) == ("r-404", "nosniff")


def test_each_answer_is_logged_at_info_and_counted(apps: Services, caplog: pytest.LogCaptureFixture) -> None:
    product = apps.new_product(5)
    app = apps.inventory
    labels = {"service": "inventory-service", "route": "/inventory/<product_id>", "method": "GET"}
    answered = _sample(app, "http_requests_total", **labels, status="200")
    timed = _sample(app, "http_request_duration_seconds_count", **labels)

    with caplog.at_level(logging.INFO, logger="inventory-service.access"):
        assert app.test_client().get(f"/inventory/{product}", headers={"X-Request-ID": "logged-1"}).status_code == 200
    (line,) = [r for r in caplog.records if r.name == "inventory-service.access"]
    fields = line.fields  # type: ignore[attr-defined]  # the structured fields of JsonFormatter
    assert {k: fields[k] for k in ("method", "route", "status", "request_id")} == {
        "method": "GET",
        "route": "/inventory/<product_id>",
        "status": 200,
        "request_id": "logged-1",
    }
    assert fields["duration_ms"] >= 0

    assert _sample(app, "http_requests_total", **labels, status="200") == answered + 1
    assert _sample(app, "http_request_duration_seconds_count", **labels) == timed + 1


def test_the_request_id_goes_on_to_inventory(apps: Services, caplog: pytest.LogCaptureFixture) -> None:
    product = apps.new_product(5)
    with caplog.at_level(logging.INFO, logger="inventory-service.access"):
        placed = apps.place(product, 1, headers={"X-Request-ID": "from-the-caller"})
    assert (placed.status_code, placed.headers["X-Request-ID"]) == (201, "from-the-caller")
    ids = {r.fields["request_id"] for r in caplog.records if r.name == "inventory-service.access"}  # type: ignore[attr-defined]
    assert ids == {"from-the-caller"}


def test_a_run_the_front_repeats_is_neither_logged_nor_counted(
    templates: Templates, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with services(templates, tmp_path, {"events_token": "fast-events"}) as apps:
        app = apps.order
        labels = {"service": "order-service", "route": "/events", "method": "GET"}
        before = {status: _sample(app, "http_requests_total", **labels, status=status) for status in ("200", "204")}
        reader = {"Authorization": "Bearer fast-events"}
        front = {ENVIRON_KEY: FrontRun(time.monotonic(), False, lambda: 0)}
        with caplog.at_level(logging.INFO, logger="order-service.access"):
            again = app.test_client().get("/events?wait=5", headers=reader, environ_overrides=front)
            assert (again.status_code, RUN_AGAIN_HEADER in again.headers) == (204, True)
            assert app.test_client().get("/events", headers=reader).status_code == 200
        assert [r.fields["status"] for r in caplog.records if r.name == "order-service.access"] == [200]  # type: ignore[attr-defined]
        assert _sample(app, "http_requests_total", **labels, status="204") == before["204"]
        assert _sample(app, "http_requests_total", **labels, status="200") == before["200"] + 1
