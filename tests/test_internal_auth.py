"""Internal and admin endpoints need the right bearer token: anything else is a 401 JSON error that comes before
the body and the path are looked at, and changes nothing. The right token works.

Which token each endpoint accepts is what `require_token(...)` says in the routes: the service token for
reserve, release and commit; service or admin for reading a reservation and the stock audit; admin for
creating, updating and restocking products, fulfilling an order and the order audit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.stack_client import Api
from tests.topology import ADMIN_TOKEN, SERVICE_TOKEN

TOKENS = {"service": SERVICE_TOKEN, "admin": ADMIN_TOKEN}
LEAKS = ("traceback", 'file "', "site-packages", "sqlalchemy", "psycopg", "sqlite3", "werkzeug", "exception")


@dataclass(frozen=True)
class World:
    """What one test starts from: a product with 50 units, of which 3 are held directly for `held` and 2 by a
    confirmed `order`; an order id `fresh` with no reservation and a product id `new` that does not exist."""

    pid: str
    held: str
    order: str
    fresh: str
    new: str

    def fill(self, text: str) -> str:
        for name in ("pid", "held", "order", "fresh", "new"):
            text = text.replace("{" + name + "}", getattr(self, name))
        return text


@dataclass(frozen=True)
class Endpoint:
    service: str  # "order" or "inventory"
    method: str
    path: str  # may name {pid}, {held}, {order}, {fresh}, {new}
    body: str | None  # a valid JSON body, or None
    accepts: tuple[str, ...]  # token kinds, as in require_token(...)


ENDPOINTS = {
    "reserve": Endpoint(
        "inventory", "POST", "/inventory/reserve",
        '{"order_id":"{fresh}","product_id":"{pid}","quantity":4}', ("service",),
    ),
    "reserve_batch": Endpoint(
        "inventory", "POST", "/inventory/reserve/batch",
        '{"reservations":[{"order_id":"{fresh}","product_id":"{pid}","quantity":4}]}', ("service",),
    ),
    "release": Endpoint("inventory", "POST", "/inventory/release", '{"order_id":"{held}"}', ("service",)),
    "commit": Endpoint("inventory", "POST", "/inventory/commit", '{"order_id":"{held}"}', ("service",)),
    "get_reservation": Endpoint("inventory", "GET", "/inventory/reservations/{held}", None, ("service", "admin")),
    "stock_audit": Endpoint("inventory", "GET", "/inventory/audit", None, ("service", "admin")),
    "create_product": Endpoint(
        "inventory", "POST", "/inventory", '{"product_id":"{new}","name":"New","price":1,"quantity":5}', ("admin",)
    ),
    "update_product": Endpoint("inventory", "PATCH", "/inventory/{pid}", '{"name":"Renamed","price":2}', ("admin",)),
    "restock": Endpoint("inventory", "POST", "/inventory/{pid}/restock", '{"quantity":7}', ("admin",)),
    "fulfil": Endpoint("order", "POST", "/orders/{order}/fulfil", None, ("admin",)),
    "order_audit": Endpoint("order", "GET", "/admin/audit", None, ("admin",)),
}  # fmt: skip
WRITES = [name for name, e in ENDPOINTS.items() if e.method != "GET"]


# --- helpers -------------------------------------------------------------------------------------------------------


def send(
    api: Api,
    endpoint: Endpoint,
    world: World,
    authorization: str | None,
    *,
    path: str | None = None,
    data: bytes | Iterator[bytes] | None = None,
    content_type: str | None = "application/json",
) -> requests.Response:
    base = api.order_url if endpoint.service == "order" else api.inventory_url
    headers: dict[str, str] = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if data is None and endpoint.body is not None:
        data = world.fill(endpoint.body).encode()
    if data is not None and content_type is not None:
        headers["Content-Type"] = content_type
    url = base + world.fill(path or endpoint.path)
    return requests.request(endpoint.method, url, data=data, headers=headers, timeout=30)


def assert_unauthorized(r: requests.Response) -> None:
    assert r.status_code == 401, f"{r.status_code} {r.text[:300]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert list(body) == ["error"] and body["error"]["code"] == "unauthorized", body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"].strip(), body
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    text = r.text.lower()
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in {r.text[:300]}"


def state(api: Api, world: World) -> dict[str, Any]:
    """Everything any of the endpoints could change."""
    held, for_order = api.reservation(world.held), api.reservation(world.order)
    assert held.status_code == 200 and for_order.status_code == 200, (held.text, for_order.text)
    return {
        "product": api.product(world.pid),
        "held": held.json(),
        "order": api.order(world.order),
        "order_reservation": for_order.json(),
        "fresh_reservation": api.reservation(world.fresh).status_code,
        "new_product": api.http.get(f"{api.inventory_url}/inventory/{world.new}", timeout=10).status_code,
        "orders": api.order_count(),
    }


@pytest.fixture
def world(api: Api) -> World:
    pid = api.new_product(50)
    held = f"H{uuid.uuid4().hex[:12]}"
    r = api.inventory_post("/inventory/reserve", {"order_id": held, "product_id": pid, "quantity": 3})
    assert r.status_code == 201, r.text
    placed = api.place(pid, 2)
    assert placed.status_code == 201 and placed.json()["status"] == "confirmed", placed.text
    return World(
        pid=pid,
        held=held,
        order=placed.json()["order_id"],
        fresh=f"F{uuid.uuid4().hex[:12]}",
        new=f"N{uuid.uuid4().hex[:12]}",
    )


def test_world_starts_as_described(api: Api, world: World) -> None:
    s = state(api, world)
    assert (s["product"]["available_quantity"], s["product"]["reserved_quantity"]) == (45, 5)
    assert s["held"]["status"] == "held" and s["order_reservation"]["status"] == "held"
    assert s["order"]["status"] == "confirmed"
    assert s["fresh_reservation"] == 404 and s["new_product"] == 404


# --- 401 for every credential but the right one -------------------------------------------------------------------

# Each builds an Authorization header (or none) from the endpoint's right token and a token it does not accept.
BAD_CREDENTIALS: dict[str, Callable[[str, str], str | None]] = {
    "no_header": lambda right, other: None,
    "empty_bearer": lambda right, other: "Bearer ",
    "wrong_token": lambda right, other: "Bearer not-the-token",
    "token_minus_last_char": lambda right, other: f"Bearer {right[:-1]}",
    "token_plus_suffix": lambda right, other: f"Bearer {right}x",
    "token_upper_case": lambda right, other: f"Bearer {right.upper()}",
    "token_without_scheme": lambda right, other: right,
    "basic_scheme": lambda right, other: f"Basic {right}",
    "token_twice": lambda right, other: f"Bearer {right} {right}",
    "non_ascii_token": lambda right, other: f"Bearer {right}\u00e9",
}


def _other(endpoint: Endpoint) -> str:
    """A real token of the kind this endpoint does not accept (not-the-token when it accepts both)."""
    refused = [TOKENS[k] for k in TOKENS if k not in endpoint.accepts]
    return refused[0] if refused else "not-the-token"


def _refusals() -> Iterator[Any]:
    for name, endpoint in ENDPOINTS.items():
        for cred in BAD_CREDENTIALS:
            yield pytest.param(endpoint, BAD_CREDENTIALS[cred], id=f"{name}-{cred}")
        for kind in TOKENS:
            if kind not in endpoint.accepts:
                yield pytest.param(endpoint, lambda right, other: f"Bearer {other}", id=f"{name}-{kind}_token")


@pytest.mark.parametrize(("endpoint", "credential"), list(_refusals()))
def test_refused_without_the_right_token(
    api: Api, world: World, endpoint: Endpoint, credential: Callable[[str, str], str | None]
) -> None:
    before = state(api, world)
    right = TOKENS[endpoint.accepts[0]]
    header = credential(right, _other(endpoint))
    r = send(api, endpoint, world, header)
    assert_unauthorized(r)
    # Nothing about the resource comes back with a 401.
    for secret in (world.pid, world.held, world.order, world.fresh, world.new):
        assert secret not in r.text
    assert state(api, world) == before


def test_admin_token_is_not_a_service_token(api: Api, world: World) -> None:
    """Spelled out: the admin token, which can do more elsewhere, cannot reserve, release or commit."""
    before = state(api, world)
    for name in ("reserve", "reserve_batch", "release", "commit"):
        assert_unauthorized(send(api, ENDPOINTS[name], world, f"Bearer {ADMIN_TOKEN}"))
    assert state(api, world) == before


# --- 401 before the body and the path are looked at ---------------------------------------------------------------


def _big(size: int) -> bytes:
    return b'{"order_id":"x","pad":"' + b"x" * size + b'"}'


BAD_REQUESTS: dict[str, dict[str, Any]] = {
    "invalid_json": {"data": b'{"order_id":'},
    "nan": {"data": b'{"quantity":NaN}'},
    "array_body": {"data": b"[]"},
    "empty_body": {"data": b""},
    "schema_violation": {"data": b'{"order_id":"bad id","quantity":"lots","extra":true}'},
    "text_plain": {"data": b'{"order_id":"x"}', "content_type": "text/plain"},
}
# Over MAX_BODY_BYTES: the server's front refuses these (413) before the app runs, so before authentication.
OVERSIZED: dict[str, dict[str, Any]] = {
    "70KB_body": {"data": _big(70_000)},
    "70KB_chunked": {"chunked": _big(70_000)},
}
UNNAMEABLE_PATHS = {
    "get_reservation": "/inventory/reservations/%00",
    "update_product": "/inventory/a%20b",
    "restock": "/inventory/" + "p" * 65 + "/restock",
    "fulfil": "/orders/ORD1/fulfil",
}


def _before_validation() -> Iterator[Any]:
    for name in WRITES:
        for bad in BAD_REQUESTS:
            for cred in ("no_token", "wrong_kind"):
                yield pytest.param(ENDPOINTS[name], bad, None, cred, id=f"{name}-{bad}-{cred}")
    for name, path in UNNAMEABLE_PATHS.items():
        for cred in ("no_token", "wrong_kind"):
            yield pytest.param(ENDPOINTS[name], None, path, cred, id=f"{name}-unnameable_path-{cred}")


def _body(spec: dict[str, Any]) -> dict[str, Any]:
    if "chunked" in spec:
        raw = spec["chunked"]
        return {"data": (raw[i : i + 4096] for i in range(0, len(raw), 4096)), "content_type": "application/json"}
    return {"data": spec["data"], "content_type": spec.get("content_type", "application/json")}


@pytest.mark.parametrize(("endpoint", "bad", "path", "credential"), list(_before_validation()))
def test_401_comes_before_body_and_path_validation(
    api: Api, world: World, endpoint: Endpoint, bad: str | None, path: str | None, credential: str
) -> None:
    before = state(api, world)
    header = None if credential == "no_token" else f"Bearer {_other(endpoint)}"
    kwargs: dict[str, Any] = {"path": path, **(_body(BAD_REQUESTS[bad]) if bad is not None else {})}
    assert_unauthorized(send(api, endpoint, world, header, **kwargs))
    assert state(api, world) == before


@pytest.mark.parametrize("oversized", sorted(OVERSIZED))
@pytest.mark.parametrize("name", WRITES)
def test_oversized_body_is_413_before_anything_else(api: Api, world: World, name: str, oversized: str) -> None:
    """The front bounds what it reads before the app (and so authentication) runs; nothing moves."""
    before = state(api, world)
    r = send(api, ENDPOINTS[name], world, None, **_body(OVERSIZED[oversized]))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    assert state(api, world) == before


def test_with_the_token_the_same_bad_body_is_judged(api: Api, world: World) -> None:
    """The other side of the test above: with the right token, the body is what is refused."""
    before = state(api, world)
    r = send(api, ENDPOINTS["reserve"], world, f"Bearer {SERVICE_TOKEN}", data=b'{"order_id":')
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    r = send(api, ENDPOINTS["restock"], world, f"Bearer {ADMIN_TOKEN}", data=b'{"quantity":"lots"}')
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    r = send(api, ENDPOINTS["fulfil"], world, f"Bearer {ADMIN_TOKEN}", path="/orders/ORD1/fulfil")
    assert r.status_code == 404 and r.json()["error"]["code"] == "order_not_found", r.text
    assert state(api, world) == before


# --- the right token works ----------------------------------------------------------------------------------------


def _changes(name: str, api: Api, world: World, r: requests.Response, before: dict[str, Any]) -> None:
    """What each endpoint does with the right token, checked against the state before."""
    after = state(api, world)
    stock = (after["product"]["available_quantity"], after["product"]["reserved_quantity"])
    was = (before["product"]["available_quantity"], before["product"]["reserved_quantity"])
    if name == "reserve":
        assert r.status_code == 201 and r.json()["status"] == "held", r.text
        assert after["fresh_reservation"] == 200 and stock == (was[0] - 4, was[1] + 4)
    elif name == "reserve_batch":
        assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == [201], r.text
        assert after["fresh_reservation"] == 200 and stock == (was[0] - 4, was[1] + 4)
    elif name == "release":
        assert r.status_code == 200 and after["held"]["status"] == "released", r.text
        assert stock == (was[0] + 3, was[1] - 3)
    elif name == "commit":
        assert r.status_code == 200 and after["held"]["status"] == "committed", r.text
        assert stock == (was[0], was[1] - 3)
    elif name == "get_reservation":
        assert r.status_code == 200 and r.json() == before["held"], r.text
        assert after == before
    elif name == "stock_audit":
        assert r.status_code == 200 and world.pid in r.json()["products"], r.text
        assert after == before
    elif name == "create_product":
        assert r.status_code == 201 and after["new_product"] == 200, r.text
        assert api.product(world.new)["available_quantity"] == 5
    elif name == "update_product":
        assert r.status_code == 200, r.text
        assert after["product"]["name"] == "Renamed" and after["product"]["price"] == 2.0 and stock == was
    elif name == "restock":
        assert r.status_code == 200 and stock == (was[0] + 7, was[1]), r.text
    elif name == "fulfil":
        assert r.status_code == 200 and r.json()["status"] == "fulfilled", r.text
        assert after["order"]["status"] == "fulfilled" and after["order_reservation"]["status"] == "committed"
        assert stock == (was[0], was[1] - 2)
    elif name == "order_audit":
        # The report itself: 409 when it finds an inconsistency (here: a reservation held with no order).
        assert r.status_code in (200, 409) and "consistent" in r.json(), r.text
        assert after == before
    else:
        raise AssertionError(f"no expectation for {name}")


@pytest.mark.parametrize(
    ("name", "kind"), [pytest.param(n, k, id=f"{n}-{k}") for n, e in ENDPOINTS.items() for k in e.accepts]
)
def test_the_right_token_works(api: Api, world: World, name: str, kind: str) -> None:
    before = state(api, world)
    r = send(api, ENDPOINTS[name], world, f"Bearer {TOKENS[kind]}")
    _changes(name, api, world, r, before)
