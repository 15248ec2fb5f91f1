"""The operator console (/console) in a real headless Chromium, against both services as real processes:
sign-in with the admin token, stock with restock and price change, orders with cancel and fulfil, the
saga's health and the audit, escaping, the Content-Security-Policy, keyboard use, and axe-core at a
desktop and a phone viewport. Screenshots of each page go to test-artifacts/console/ (CONSOLE_SCREENSHOTS
to put them elsewhere); the ones in docs/console/ are copies of these.

One stack and one browser serve the whole module; each test opens its own tab (so its own
sessionStorage, i.e. signed out).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import BrowserContext, Dialog, Page, Playwright, ViewportSize, expect, sync_playwright

from local.processes import ROOT
from tests.browser import chromium
from tests.stack_client import Api
from tests.topology import ADMIN_TOKEN, Stack, stack, wait_until

AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # axe-core 4.14.1
HOSTILE = "<img src=x onerror=alert(1)>"
VIEWPORTS: dict[str, ViewportSize] = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
WAIT = 20_000  # ms an expectation may wait for the page (the poll runs every 5 s)


def _screenshots() -> Path:
    where = Path(os.environ.get("CONSOLE_SCREENSHOTS", ROOT / "test-artifacts" / "console"))
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Both services and a recovery worker on SQLite, logging every request (INFO), so the logs can be
    searched for the token."""
    workdir = Path(tmp_path_factory.mktemp("console"))
    env = {"LOG_LEVEL": "INFO"}
    with stack(workdir, "sqlite", inventory_env=env, order_env=env, with_worker=True) as s:
        yield s


@pytest.fixture(scope="module")
def live_api(live: Stack) -> Api:
    return Api.of(live)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with sync_playwright() as p, _context(p, tmp_path_factory.mktemp("chromium")) as context:
        yield context


def _context(p: Playwright, where: Path) -> Any:
    return chromium(p, where / "profile", viewport=VIEWPORTS["desktop"])


class Console:
    """One tab on the console, recording what a test must never see: dialogs, page errors, console errors
    (a CSP violation is one), and requests that leave the order service."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.requests: list[Any] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("request", lambda r: self.requests.append(r))

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.base}/console{fragment}")

    def sign_in(self, token: str = ADMIN_TOKEN) -> None:
        self.page.get_by_label("Admin token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()

    def signed_in(self) -> None:
        self.open()
        self.sign_in()
        expect(self.page.locator("#view-stock")).to_be_visible()
        expect(self.stock_row("P001")).to_be_visible()

    def go(self, section: str) -> None:
        self.page.get_by_role("navigation", name="Sections").get_by_role("link", name=section).click()

    def stock_row(self, product_id: str) -> Any:
        return self.page.locator(f'#stock-table tr[data-product="{product_id}"]')

    def stock_cell(self, product_id: str, column: int) -> Any:
        return self.stock_row(product_id).locator("td").nth(column)

    def confirm(self, expected: str, button: str) -> None:
        dialog = self.page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator("#confirm-text")).to_contain_text(expected)
        dialog.get_by_role("button", name=button).click()
        expect(dialog).to_be_hidden()

    def shot(self, name: str, full_page: bool = False) -> None:
        self.page.screenshot(path=str(_screenshots() / f"{name}.png"), full_page=full_page)

    def clean(self, *statuses: int) -> None:
        """Nothing the page did fired a dialog, raised, broke the CSP, or went anywhere but the service.
        `statuses`: answers the test expects, which the browser logs as failed loads."""
        assert self.dialogs == [], self.dialogs
        expected = tuple(f"the server responded with a status of {status}" for status in statuses)
        errors = [e for e in self.errors if not any(text in e for text in expected)]
        assert errors == [], errors
        elsewhere = [r.url for r in self.requests if not r.url.startswith(self.base + "/")]
        assert elsewhere == [], elsewhere


@pytest.fixture
def console(browser: BrowserContext, live: Stack) -> Iterator[Console]:
    page = browser.new_page()
    page.set_viewport_size(VIEWPORTS["desktop"])
    try:
        yield Console(page, live.order.url)
    finally:
        page.close()


# Columns of the stock table.
NAME, PRICE, AVAILABLE, RESERVED, SOLD = 1, 2, 3, 4, 5


def _product(live_api: Api, quantity: int, name: str = "Console test product", price: float = 12.5) -> str:
    product_id = f"T{uuid.uuid4().hex[:10]}"
    r = live_api.http.post(
        f"{live_api.inventory_url}/inventory",
        json={"product_id": product_id, "name": name, "price": price, "quantity": quantity},
        headers=live_api.admin,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return product_id


def _order(live_api: Api, product_id: str, quantity: int, customer: str = "C-console") -> str:
    r = live_api.place(product_id, quantity, customer)
    assert r.status_code == 201, r.text
    return str(r.json()["order_id"])


# --- sign-in -------------------------------------------------------------------------------------------


def test_sign_in_shows_the_seeded_products_and_a_restock_changes_the_number(console: Console, live_api: Api) -> None:
    console.signed_in()
    page = console.page
    for product_id, name in (("P001", "Laptop"), ("P002", "Wireless Mouse"), ("P003", "USB-C Cable")):
        expect(console.stock_cell(product_id, NAME)).to_have_text(name)
    expect(console.stock_row("P004")).to_be_visible()
    before = live_api.product("P003")["available_quantity"]
    expect(console.stock_cell("P003", AVAILABLE)).to_have_text(str(before))

    page.get_by_role("button", name="Restock USB-C Cable (P003)").click()
    page.get_by_label("Units to add").fill("25")
    page.get_by_role("button", name="Review").click()
    console.confirm(f"Add 25 units to USB-C Cable (P003)? It has {before} available now.", "Restock")

    expect(console.stock_cell("P003", AVAILABLE)).to_have_text(str(before + 25))
    expect(page.locator("#notice")).to_have_text(f"Restocked USB-C Cable (P003): {before + 25} available.")
    assert live_api.product("P003")["available_quantity"] == before + 25
    console.shot("stock")
    console.clean()


def test_the_token_stays_in_the_tab_never_in_a_url_cookie_or_log(console: Console, live: Stack) -> None:
    console.signed_in()
    console.go("Orders")
    expect(console.page.locator("#orders-summary")).not_to_be_empty()
    page = console.page
    assert page.evaluate("sessionStorage.getItem('orderConsole.adminToken')") == ADMIN_TOKEN
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    api_calls = [r for r in console.requests if "/console" not in r.url]
    assert api_calls, "the console called no API"
    for r in console.requests:
        assert ADMIN_TOKEN not in r.url, r.url
    for r in api_calls:
        assert r.headers.get("authorization") == f"Bearer {ADMIN_TOKEN}", r.url
    assert ADMIN_TOKEN not in page.url
    logs = live.logs()
    assert '"/admin/products"' in logs  # the requests were logged (LOG_LEVEL=INFO) ...
    assert ADMIN_TOKEN not in logs  # ... and the token was not
    console.clean()


def test_a_wrong_token_gives_a_clear_message_and_shows_no_data(console: Console) -> None:
    console.open()
    console.sign_in("not-the-admin-token")
    page = console.page
    expect(page.locator("#signin-error")).to_have_text(
        "That token was not accepted (401). Check the admin token (ADMIN_TOKEN) and try again."
    )
    expect(page.locator("#view-signin")).to_be_visible()
    for hidden in ("#nav", "#view-stock", "#view-orders", "#view-order", "#view-health", "#sign-out"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#stock-table tbody tr")).to_have_count(0)
    expect(page.locator("#orders-table tbody tr")).to_have_count(0)
    assert page.evaluate("sessionStorage.length") == 0
    # The only call made was the sign-in check; nothing read data with the wrong token.
    calls = [r.url.removeprefix(console.base) for r in console.requests if "/console" not in r.url]
    assert calls == ["/admin/saga"], calls
    console.shot("sign-in-refused")
    console.clean(401)


def test_sign_out_forgets_the_token_and_clears_the_page(console: Console) -> None:
    console.signed_in()
    console.page.get_by_role("button", name="Sign out").click()
    page = console.page
    expect(page.locator("#view-signin")).to_be_visible()
    expect(page.locator("#stock-table tbody tr")).to_have_count(0)
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.locator("#view-signin")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    console.clean()


# --- stock ---------------------------------------------------------------------------------------------


def test_a_price_change_is_confirmed_first_and_going_back_changes_nothing(console: Console, live_api: Api) -> None:
    product_id = _product(live_api, 40, name="Desk Lamp", price=39.99)
    console.signed_in()
    page = console.page
    expect(console.stock_cell(product_id, PRICE)).to_have_text("39.99")

    page.get_by_role("button", name=f"Change price of Desk Lamp ({product_id})").click()
    page.get_by_label("New price").fill("34.5")
    page.get_by_role("button", name="Review").click()
    console.confirm("from 39.99 to 34.50", "Go back")
    assert live_api.product(product_id)["price"] == 39.99

    page.get_by_role("button", name=f"Change price of Desk Lamp ({product_id})").click()
    page.get_by_label("New price").fill("34.5")
    page.get_by_role("button", name="Review").click()
    console.confirm("Orders already placed keep their price.", "Change the price")
    expect(console.stock_cell(product_id, PRICE)).to_have_text("34.50")
    assert live_api.product(product_id)["price"] == 34.5
    console.clean()


def test_low_stock_is_highlighted(console: Console, live_api: Api) -> None:
    low, plenty = _product(live_api, 10), _product(live_api, 11)  # CONSOLE_LOW_STOCK is 10 by default
    console.signed_in()
    expect(console.stock_row(low)).to_have_class("low")
    expect(console.stock_cell(low, AVAILABLE)).to_have_text("10Low")
    expect(console.stock_row(plenty)).not_to_have_class("low")
    console.clean()


# --- orders --------------------------------------------------------------------------------------------


def test_a_cart_shows_every_product_in_the_list_and_a_line_each_on_its_page(console: Console, live_api: Api) -> None:
    first, second = _product(live_api, 20, price=12.5), _product(live_api, 20, price=2.0)
    customer = f"C-{uuid.uuid4().hex[:8]}"
    r = live_api.place_cart([(first, 2), (second, 3)], customer)
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]

    console.signed_in()
    console.go("Orders")
    page = console.page
    page.get_by_label("Customer").fill(customer)
    page.get_by_role("button", name="Filter").click()
    row = page.locator(f'#orders-table tr[data-order="{order_id}"]')
    expect(row).to_contain_text(f"{first}, {second}")
    row.get_by_role("link", name=order_id).click()

    lines = page.locator("#order-lines tbody tr")
    expect(lines).to_have_count(2)
    expect(lines.nth(0).locator("td")).to_have_text([f"{first} · Console test product", "2", "12.50", "25.00"])
    expect(lines.nth(1).locator("td")).to_have_text([f"{second} · Console test product", "3", "2.00", "6.00"])
    console.clean()


def test_an_order_placed_through_the_api_is_found_cancelled_and_its_stock_comes_back(
    console: Console, live_api: Api
) -> None:
    product_id = _product(live_api, 20, price=12.5)
    customer = f"C-{uuid.uuid4().hex[:8]}"
    order_id = _order(live_api, product_id, 3, customer)
    assert live_api.product(product_id)["available_quantity"] == 17

    console.signed_in()
    console.go("Orders")
    page = console.page
    page.get_by_label("Customer").fill(customer)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#orders-summary")).to_have_text("Orders 1\u20131 of 1, newest first.")
    row = page.locator(f'#orders-table tr[data-order="{order_id}"]')
    expect(row).to_contain_text("confirmed")
    console.shot("orders")
    row.get_by_role("link", name=order_id).click()

    expect(page.locator("#order-title")).to_have_text(f"Order {order_id}")
    line = page.locator("#order-lines tbody tr")
    expect(line).to_have_count(1)
    expect(line.locator("td")).to_have_text([f"{product_id} · Console test product", "3", "12.50", "37.50"])
    expect(page.locator("#order-timeline li")).to_have_count(1)
    expect(page.locator("#order-timeline")).to_contain_text("placed")
    console.shot("order")

    page.get_by_role("button", name="Cancel order").click()
    console.confirm(f"Cancel order {order_id}?", "Cancel the order")
    expect(page.locator("#order-outcome")).to_have_text("200: cancelled; the stock is back in inventory.")
    expect(page.locator("#order-facts")).to_contain_text("cancelled")
    expect(page.locator("#order-timeline")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel order")).to_be_disabled()

    console.go("Stock")
    expect(console.stock_cell(product_id, AVAILABLE)).to_have_text("20")
    expect(console.stock_cell(product_id, RESERVED)).to_have_text("0")
    assert live_api.order(order_id)["status"] == "cancelled"
    assert live_api.product(product_id)["available_quantity"] == 20
    console.clean()


def test_orders_are_filtered_by_state_and_customer_and_paged_newest_first(console: Console, live_api: Api) -> None:
    product_id = _product(live_api, 100)
    customer = f"C-{uuid.uuid4().hex[:8]}"
    placed = [_order(live_api, product_id, 1, customer) for _ in range(23)]
    for order_id in placed[:2]:
        assert live_api.cancel(order_id).status_code == 200
    console.signed_in()
    console.go("Orders")
    page = console.page
    page.get_by_label("Customer").fill(customer)
    page.get_by_role("button", name="Filter").click()
    summary, rows = page.locator("#orders-summary"), page.locator("#orders-table tbody tr")
    expect(summary).to_have_text("Orders 1\u201320 of 23, newest first.")
    expect(rows.first).to_have_attribute("data-order", placed[-1])
    expect(page.get_by_role("button", name="Newer")).to_be_disabled()
    page.get_by_role("button", name="Older").click()
    expect(summary).to_have_text("Orders 21\u201323 of 23, newest first.")
    expect(rows).to_have_count(3)
    expect(rows.last).to_have_attribute("data-order", placed[0])
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    page.get_by_label("State", exact=True).select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(summary).to_have_text("Orders 1\u20132 of 2, newest first.")
    expect(rows.locator("td.status")).to_have_text(["cancelled", "cancelled"])
    console.clean()


def test_fulfilling_an_order_in_the_console_counts_it_sold(console: Console, live_api: Api) -> None:
    product_id = _product(live_api, 20)
    order_id = _order(live_api, product_id, 4)
    console.signed_in()
    console.open(f"#order/{order_id}")
    page = console.page
    expect(page.locator("#order-title")).to_have_text(f"Order {order_id}")
    page.get_by_role("button", name="Fulfil order").click()
    console.confirm(f"Fulfil order {order_id}?", "Fulfil the order")
    expect(page.locator("#order-outcome")).to_have_text("200: fulfilled; the stock is sold.")
    expect(page.locator("#order-timeline")).to_contain_text("fulfilled")

    console.go("Stock")
    expect(console.stock_cell(product_id, SOLD)).to_have_text("4")
    expect(console.stock_cell(product_id, AVAILABLE)).to_have_text("16")
    expect(console.stock_cell(product_id, RESERVED)).to_have_text("0")
    assert live_api.order(order_id)["status"] == "fulfilled"
    console.clean()


def test_an_action_the_service_refuses_shows_its_409_and_message(console: Console, live_api: Api) -> None:
    product_id = _product(live_api, 10)
    order_id = _order(live_api, product_id, 1)
    console.signed_in()
    console.open(f"#order/{order_id}")
    page = console.page
    expect(page.get_by_role("button", name="Cancel order")).to_be_enabled()
    # Another operator fulfils it first; this page's view is frozen as it was (its refreshes fail).
    page.route(f"**/orders/{order_id}", lambda r: r.abort() if r.request.method == "GET" else r.continue_())
    assert live_api.fulfil(order_id).status_code == 200
    page.get_by_role("button", name="Cancel order").click()
    console.confirm(f"Cancel order {order_id}?", "Cancel the order")
    expect(page.locator("#order-outcome")).to_have_text(f"Refused: 409 not_cancellable: Order {order_id} is fulfilled.")
    assert live_api.order(order_id)["status"] == "fulfilled"
    page.unroute(f"**/orders/{order_id}")
    console.errors = [e for e in console.errors if "ERR_FAILED" not in e]  # the aborted refreshes
    console.clean(409)


def test_the_console_refreshes_itself_without_a_reload(console: Console, live_api: Api) -> None:
    console.signed_in()
    console.go("Orders")
    page = console.page
    expect(page.locator("#orders-summary")).not_to_be_empty()
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    order_id = _order(live_api, "P002", 1)
    expect(page.locator(f'#orders-table tr[data-order="{order_id}"]')).to_be_visible(timeout=WAIT)
    assert navigations == []
    console.clean()


def test_a_slow_service_never_gets_a_second_refresh_alongside_the_first(console: Console) -> None:
    console.signed_in()
    page = console.page
    held: list[Any] = []
    api_call = re.compile(rf"^{re.escape(console.base)}/(admin/|orders)")
    page.route(api_call, lambda route: held.append(route))  # answered only when the test lets it go
    console.go("Saga health")  # refreshes at once (or right after a refresh already under way)
    for _ in range(300):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the console made no call"
    for section in ("Orders", "Saga health", "Stock", "Orders"):
        console.go(section)
    page.wait_for_timeout(6_000)  # past the next poll, had one been scheduled
    assert len(held) == 1, [r.request.url for r in held]
    held[0].continue_()
    page.unroute(api_call)
    # Once it answers, the one refresh the navigations queued runs, for the page now on screen.
    expect(page.locator("#orders-summary")).not_to_be_empty(timeout=WAIT)
    console.clean()


# --- saga health and the audit -------------------------------------------------------------------------


def test_saga_health_counts_orders_by_state(console: Console, live_api: Api) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    wait_until(
        lambda: bool(
            live_api.http.get(f"{live_api.order_url}/admin/saga", headers=admin, timeout=10).json()["workers"]
        ),
        what="the recovery worker's first heartbeat",
    )
    console.signed_in()
    console.go("Saga health")
    page = console.page
    confirmed = live_api.orders(status="confirmed", limit=1)["total_count"]
    row = page.locator("#health-counts tbody tr").filter(has_text="confirmed")
    expect(row.locator("td").nth(1)).to_have_text(str(confirmed))
    expect(page.locator("#health-inflight")).to_have_text("0")
    expect(page.locator("#health-oldest")).to_have_text("No order is between two steps.")
    expect(page.locator("#health-worker")).to_contain_text("(moving)")
    expect(page.locator("#health-outbox")).to_contain_text("kept for the feed (GET /events)")
    console.clean()


def test_an_audit_discrepancy_written_into_the_database_is_reported(
    console: Console, live_api: Api, live: Stack
) -> None:
    product_id = _product(live_api, 30)
    console.signed_in()
    console.go("Saga health")
    page = console.page
    page.get_by_role("button", name="Run the audit").click()
    expect(page.locator("#audit-result")).to_contain_text("Consistent: no discrepancies.")

    # Seven units appear in the stock columns without a ledger row: inventory's books no longer add up.
    engine = live.inventory_db.engine()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE products SET available_quantity = available_quantity + 7 WHERE product_id = ?", (product_id,)
            )
        page.get_by_role("button", name="Run the audit").click()
        result = page.locator("#audit-result")
        expect(result).to_contain_text("1 discrepancy.")
        item = result.locator('li[data-kind="ledger_mismatch"]')
        expect(item).to_have_text(
            f"Stock columns differ from the stock ledger{product_id}: the stock ledger does not add up to the "
            "stock columns"
        )
        console.shot("health", full_page=True)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE products SET available_quantity = available_quantity - 7 WHERE product_id = ?", (product_id,)
            )
        engine.dispose()
    page.get_by_role("button", name="Run the audit").click()
    expect(page.locator("#audit-result")).to_contain_text("Consistent: no discrepancies.")
    console.clean(409)  # the audit's report of the discrepancy


# --- escaping, CSP, keyboard, accessibility ---------------------------------------------------------------


def test_a_hostile_product_name_renders_as_text_and_no_dialog_fires(console: Console, live_api: Api) -> None:
    product_id = _product(live_api, 5, name=HOSTILE)
    order_id = _order(live_api, product_id, 1)
    console.signed_in()
    page = console.page
    expect(console.stock_cell(product_id, NAME)).to_have_text(HOSTILE)
    page.get_by_role("button", name=f"Restock {HOSTILE} ({product_id})").click()
    expect(page.locator("#edit-product")).to_have_text(f"{HOSTILE} ({product_id}): 4 available now.")
    page.get_by_role("button", name="Cancel", exact=True).click()
    console.open(f"#order/{order_id}")
    expect(page.locator("#order-lines tbody td").first).to_have_text(f"{product_id} · {HOSTILE}")
    assert page.locator("img").count() == 0
    console.clean()  # no dialog fired


def test_the_page_is_same_origin_under_a_strict_content_security_policy(console: Console, live: Stack) -> None:
    r = requests.get(f"{live.order.url}/console", timeout=10)
    assert r.status_code == 200
    csp = dict(part.strip().split(" ", 1) for part in r.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert csp["form-action"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"
    html = r.text
    assert all('src="/console/static/' in tag for tag in re.findall(r"<script[^>]*>", html))
    assert re.search(r"<script[^>]*>\s*[^<\s]", html) is None, "inline script"
    assert " style=" not in html and "<style" not in html
    # The token field is never submitted as a form field: it has no name.
    assert re.search(r'<input id="token"[^>]*name=', html) is None
    for asset in ("console.js", "console.css"):
        a = requests.get(f"{live.order.url}/console/static/{asset}", timeout=10)
        assert a.status_code == 200 and a.headers["Content-Security-Policy"] == r.headers["Content-Security-Policy"]
    # In the browser: every view, nothing from elsewhere, no CSP violation (each is a console error).
    console.signed_in()
    for section in ("Orders", "Saga health", "Stock"):
        console.go(section)
        console.page.wait_for_load_state("networkidle")
    console.clean()


def _tab_to(page: Page, selector: str, most: int = 60, backwards: bool = False) -> None:
    target = page.locator(selector)
    for _ in range(most):
        if target.evaluate("node => node === document.activeElement"):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"{selector} is not reachable with the keyboard")


def test_the_console_works_from_the_keyboard_alone(console: Console, live_api: Api) -> None:
    product_id = _product(live_api, 8)
    console.open()
    page = console.page
    _tab_to(page, "#token")
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    expect(console.stock_row(product_id)).to_be_visible()
    _tab_to(page, f'[data-key="restock:{product_id}"]')
    page.keyboard.press("Enter")
    expect(page.locator("#edit-value")).to_be_focused()
    page.keyboard.type("5")
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-no")).to_be_focused()  # the safe choice has the focus
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#confirm-yes")).to_be_focused()
    page.keyboard.press("Enter")
    expect(console.stock_cell(product_id, AVAILABLE)).to_have_text("13")
    _tab_to(page, '#nav a[data-view="health"]', backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("#health-title")).to_be_focused()
    console.clean()


def _axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is (injected by the test only)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluated by the browser's debugger, which CSP does not govern
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_the_console_assets_ship_in_the_package() -> None:
    """A non-editable install (the image's) carries only the data files package-data names: every template
    and static asset of the console must match one of its patterns."""
    config = tomllib.loads((ROOT / "order-service" / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["order_service"]
    package = ROOT / "order-service" / "order_service"
    assets = [
        path.relative_to(package).as_posix()
        for path in (package / "console").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert {"console/static/console.js", "console/static/console.css"} <= set(assets)
    assert [a for a in assets if not any(fnmatch.fnmatch(a, p) for p in patterns)] == []


def test_axe_core_is_the_pinned_vendored_release() -> None:
    assert hashlib.sha256(AXE.read_bytes()).hexdigest() == AXE_SHA256


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_axe_core_finds_no_serious_or_critical_violations(console: Console, live_api: Api, viewport: str) -> None:
    page = console.page
    page.set_viewport_size(VIEWPORTS[viewport])
    order_id = _order(live_api, "P002", 1)
    found: dict[str, list[dict[str, Any]]] = {}
    console.open()
    expect(page.locator("#view-signin")).to_be_visible()
    found["sign-in"] = _axe(page)
    console.shot(f"{viewport}-sign-in")
    console.sign_in()
    expect(console.stock_row("P001")).to_be_visible()
    found["stock"] = _axe(page)
    console.shot(f"{viewport}-stock")
    page.get_by_role("button", name="Restock Laptop (P001)").click()
    found["restock dialog"] = _axe(page)
    console.shot(f"{viewport}-restock")
    page.get_by_role("button", name="Cancel", exact=True).click()
    console.go("Orders")
    expect(page.locator(f'#orders-table tr[data-order="{order_id}"]')).to_be_visible()
    found["orders"] = _axe(page)
    console.shot(f"{viewport}-orders")
    page.get_by_role("link", name=order_id).click()
    expect(page.locator("#order-title")).to_have_text(f"Order {order_id}")
    found["order"] = _axe(page)
    console.shot(f"{viewport}-order")
    console.go("Saga health")
    page.get_by_role("button", name="Run the audit").click()
    expect(page.locator("#audit-result")).to_contain_text("Consistent")
    found["saga health"] = _axe(page)
    console.shot(f"{viewport}-health")
    assert {view: v for view, v in found.items() if v} == {}
    console.clean()


def test_the_console_and_the_docs_link_to_each_other(console: Console) -> None:
    console.open()
    page = console.page
    page.get_by_role("link", name="API docs").click()
    expect(page).to_have_url(f"{console.base}/docs/swagger")
    link = page.locator(".info a[href='/console']")
    expect(link).to_be_visible(timeout=WAIT)
    assert link.evaluate("a => a.href") == f"{console.base}/console"  # Swagger UI opens it in a new tab
    # /docs/ is Swagger UI too, not a picker page with one card.
    page.goto(f"{console.base}/docs/")
    expect(page).to_have_url(f"{console.base}/docs/swagger")
    console.errors = []  # Swagger UI's own console output is not the console's
