"""The API documents and the interactive docs: each service serves a valid OpenAPI 3.1 document at
/openapi.json that says what the code does (security, statuses, error bodies, money as numbers), and
/docs renders it in a real headless Chromium from the bundled Swagger UI, with nothing fetched from
anywhere but the service itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import OpenAPIV31SpecValidator
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

from tests.browser import chromium
from tests.topology import Stack, stack

ERROR_REF = "#/components/schemas/ErrorResponse"

# Which token each protected operation takes (operationId → security requirement); the rest are public.
SECURITY = {
    "order": {
        "fulfil_order": [{"adminToken": []}],
        "audit": [{"adminToken": []}],
        # The operator console's admin API (order_service/console/api.py).
        "saga_state": [{"adminToken": []}],
        "stock": [{"adminToken": []}],
        "restock_product": [{"adminToken": []}],
        "update_product": [{"adminToken": []}],
        # The event feed: its own read-only token, or the admin token.
        "read_events": [{"eventsToken": []}, {"adminToken": []}],
    },
    "inventory": {
        "reserve": [{"serviceToken": []}],
        "reserve_batch": [{"serviceToken": []}],
        "release": [{"serviceToken": []}],
        "commit": [{"serviceToken": []}],
        "get_reservation": [{"serviceToken": []}, {"adminToken": []}],
        "audit": [{"serviceToken": []}, {"adminToken": []}],
        "create_product": [{"adminToken": []}],
        "update_product": [{"adminToken": []}],
        "restock": [{"adminToken": []}],
        "fold_ledger": [{"serviceToken": []}, {"adminToken": []}],
    },
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Both services on SQLite: the documents do not depend on the engine."""
    with stack(Path(tmp_path_factory.mktemp("docs")), "sqlite") as s:
        yield s


def _url(live: Stack, service: str) -> str:
    return live.order.url if service == "order" else live.inventory.url


def _document(url: str) -> dict[str, Any]:
    r = requests.get(f"{url}/openapi.json", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


# --- the document ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["order", "inventory"])
def test_document_is_valid_openapi_3_1(live: Stack, service: str) -> None:
    doc = _document(_url(live, service))
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    OpenAPIV31SpecValidator(doc).validate()
    # The copy Swagger UI loads (/docs/openapi.json) is the same document.
    assert requests.get(f"{_url(live, service)}/docs/openapi.json", timeout=10).json() == doc


@pytest.mark.parametrize("service", ["order", "inventory"])
def test_document_describes_every_operation(live: Stack, service: str) -> None:
    doc = _document(_url(live, service))
    assert doc["info"]["title"] and doc["info"]["description"]
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    for method, path, op in _operations(doc):
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("tags"), where
        # Every path parameter is declared, required and described.
        declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
        assert set(declared) == set(re.findall(r"\{(\w+)\}", path)), where
        assert all(p["required"] and p.get("description") for p in declared.values()), where
        # 405 belongs to the path, not to an operation; flask-openapi3's blanket 422 is gone.
        assert "405" not in op["responses"], where
        for status, response in op["responses"].items():
            assert response.get("description"), f"{where} {status}"
            if int(status) < 400 or (op["operationId"] == "audit" and status == "409"):
                continue  # the audit's 409 is its report
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, f"{where} {status}: {schema}"
        if "503" in op["responses"]:
            assert op["responses"]["503"]["headers"]["Retry-After"]["required"] is True, where
        assert "503" in op["responses"], f"{where}: every operation reads a database"


@pytest.mark.parametrize("service", ["order", "inventory"])
def test_document_declares_the_tokens_the_code_requires(live: Stack, service: str) -> None:
    doc = _document(_url(live, service))
    schemes = doc["components"]["securitySchemes"]
    expected_schemes = {"order": {"adminToken", "eventsToken"}, "inventory": {"serviceToken", "adminToken"}}[service]
    assert set(schemes) == expected_schemes
    assert all(s["type"] == "http" and s["scheme"] == "bearer" and s.get("description") for s in schemes.values())
    for method, path, op in _operations(doc):
        expected = SECURITY[service].get(op["operationId"])
        assert op.get("security") == expected, f"{method.upper()} {path}"
        # A token-protected operation answers 401 without it; a public one never does (CUSTOMER_AUTH=none).
        assert ("401" in op["responses"]) == (expected is not None), f"{method.upper()} {path}"
        if expected:
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_order_document_money_idempotency_key_and_limits(live: Stack) -> None:
    doc = _document(live.order.url)
    order = doc["components"]["schemas"]["Order"]["properties"]
    for field in ("unit_price", "total_price"):
        assert {"type": "null"} in order[field]["anyOf"]
        money = next(s for s in order[field]["anyOf"] if s.get("type") != "null")
        assert money["type"] == "number" and money["multipleOf"] == 0.01, money
    assert order["created_at"]["format"] == "date-time"
    create = doc["paths"]["/orders"]["post"]
    (key,) = [p for p in create["parameters"] if p["in"] == "header"]
    assert key["name"] == "Idempotency-Key" and key["required"] is False and key["description"]
    assert key["schema"]["type"] == "string" and key["schema"]["maxLength"] == 255
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateOrderRequest"
    }
    # MAX_QUANTITY is a setting; the document says the configured value.
    assert doc["components"]["schemas"]["CreateOrderRequest"]["properties"]["quantity"]["maximum"] == 10_000
    assert set(create["responses"]) == {"201", "400", "404", "409", "413", "415", "422", "503"}


def test_inventory_document_money(live: Stack) -> None:
    schemas = _document(live.inventory.url)["components"]["schemas"]
    assert schemas["Product"]["properties"]["price"]["type"] == "number"
    assert schemas["CheckResult"]["properties"]["price"]["type"] == "number"
    price_in = schemas["CreateProductRequest"]["properties"]["price"]
    assert price_in["type"] == "number" and price_in["minimum"] == 0 and price_in["maximum"] == 9_999_999_999.99
    assert schemas["Reservation"]["properties"]["updated_at"]["format"] == "date-time"


def test_customer_tokens_are_declared_when_customer_auth_is_on(tmp_path: Path) -> None:
    """With CUSTOMER_AUTH=jwt every order operation takes a customer's JWT or the admin token, and says 401."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from order_service import create_app
    from order_service.settings import Settings

    key = tmp_path / "customers.pem"
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'orders.db'}",
        customer_auth="jwt",
        jwt_public_key_file=key,
        admin_token="admin",
    )
    doc = create_app(settings).test_client().get("/openapi.json").get_json()
    OpenAPIV31SpecValidator(doc).validate()
    assert doc["components"]["securitySchemes"]["customerToken"]["bearerFormat"] == "JWT"
    for method, path, op in _operations(doc):
        assert "401" in op["responses"], f"{method.upper()} {path}"
        # Operations with their own tokens keep them; every other needs a customer's JWT or the admin token.
        expected = SECURITY["order"].get(op["operationId"], [{"customerToken": []}, {"adminToken": []}])
        assert op["security"] == expected, f"{method.upper()} {path}"


# --- the interactive docs, in a browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, with a throwaway profile; never Playwright's own browser download."""
    with chromium(playwright, tmp_path / "chromium-profile") as context:
        yield context


# One operation per service opened in the page, to see its documented statuses rendered.
OPENED = {"order": ("post", "/orders"), "inventory": ("post", "/inventory/reserve")}


@pytest.mark.parametrize("service", ["order", "inventory"])
def test_docs_page_renders_every_operation_offline(
    live: Stack, service: str, browser: BrowserContext, tmp_path: Path
) -> None:
    base = _url(live, service)
    doc = _document(base)
    # Offline: any request that leaves the service (a CDN, fonts, telemetry) is refused and recorded.
    elsewhere: list[str] = []

    def only_the_service(route: Any) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    browser.route("**/*", only_the_service)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{base}/docs")
    assert page.url == f"{base}/docs/swagger"
    page.wait_for_selector(".opblock", timeout=30_000)
    page.wait_for_load_state("networkidle")

    rendered = {
        (
            block.locator(".opblock-summary-method").inner_text().lower(),
            block.locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for block in page.locator(".opblock").all()
    }
    documented = {(method, path) for method, path, _ in _operations(doc)}
    assert rendered == documented
    prefix = "/orders" if service == "order" else "/inventory"
    assert any(path.startswith(prefix) for _, path in rendered)
    assert page.locator(".info .title").inner_text().startswith(doc["info"]["title"])
    assert page.locator("button.authorize").count() == 1  # the bearer schemes

    method, path = OPENED[service]
    block = page.locator(f".opblock-{method}").filter(has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))
    block.locator(".opblock-summary").click()
    block.locator(".responses-table").first.wait_for()
    codes = block.locator("tr.response").evaluate_all("rows => rows.map(row => row.getAttribute('data-code'))")
    assert sorted(codes) == sorted(doc["paths"][path][method]["responses"])

    shot = tmp_path / f"docs-{service}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert elsewhere == [], f"the docs page fetched from elsewhere: {elsewhere}"
    assert errors == [], errors
