"""Hostile input, on both services, gets one exact 4xx JSON error and changes nothing.

Every case sends raw bytes with explicit headers and checks four things: the status, the error shape
{"error": {"code", "message"}} with the expected code, no stack-trace or library text in the body, and no change
anywhere: not the stock (name, price, quantities) of the product the test created, not the total number of orders
over every state, no reservation for the order id in the body, no product under the new id in the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests

from tests.stack_client import Api

LIMIT = 64 * 1024  # MAX_BODY_BYTES
MAX_QUANTITY = 10_000
MAX_RESTOCK = 1_000_000_000

# Text that would mean an exception, a path or a library leaked into a response.
LEAKS = ("traceback", 'file "', "site-packages", "sqlalchemy", "psycopg", "sqlite3", "werkzeug", "exception")


# --- helpers -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """What a body may name: the test's product (@PID@), a fresh order id (@OID@), a fresh product id (@NEW@)."""

    pid: str
    oid: str
    new: str

    def fill(self, template: str) -> str:
        return template.replace("@PID@", self.pid).replace("@OID@", self.oid).replace("@NEW@", self.new)


@dataclass(frozen=True)
class Body:
    raw: bytes | Callable[[Ids], bytes]
    content_type: str | None = "application/json"
    chunked: bool = False

    def data(self, ids: Ids) -> bytes | Iterator[bytes]:
        raw = self.raw(ids) if callable(self.raw) else ids.fill(self.raw.decode("latin-1")).encode("latin-1")
        if not self.chunked:
            return raw
        # A generator has no length, so requests sends it with Transfer-Encoding: chunked.
        return (raw[i : i + 4096] for i in range(0, len(raw), 4096)) if raw else iter([b""])


@dataclass(frozen=True)
class Endpoint:
    service: str  # "order" or "inventory"
    method: str
    path: str  # may name @PID@ / @OID@
    token: str | None = None  # "service", "admin" or None: the right one, so parsing is what answers


def assert_error(r: requests.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"].strip(), body
    assert isinstance(error.get("message"), str) and error["message"].strip(), body
    if code is not None:
        assert error["code"] == code, body
    text = r.text.lower()
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in {r.text[:300]}"


@contextmanager
def nothing_moves(api: Api, ids: Ids) -> Iterator[None]:
    product, orders = api.product(ids.pid), api.order_count()
    yield
    assert api.product(ids.pid) == product, "the test product changed"
    assert api.order_count() == orders, "the number of orders changed"
    r = api.reservation(ids.oid)
    assert r.status_code == 404, f"a reservation for {ids.oid} exists: {r.text}"
    r = api.http.get(f"{api.inventory_url}/inventory/{ids.new}", timeout=10)
    assert r.status_code == 404, f"a product {ids.new} exists: {r.text}"


@pytest.fixture
def ids(api: Api) -> Ids:
    return Ids(pid=api.new_product(50), oid=f"X{uuid.uuid4().hex[:12]}", new=f"N{uuid.uuid4().hex[:12]}")


def send(
    api: Api, endpoint: Endpoint, ids: Ids, body: Body | None = None, headers: dict[str, str | bytes] | None = None
) -> requests.Response:
    base = api.order_url if endpoint.service == "order" else api.inventory_url
    sent: dict[str, str | bytes] = {}
    if endpoint.token == "service":
        sent.update(api.service)
    elif endpoint.token == "admin":
        sent.update(api.admin)
    if body is not None and body.content_type is not None:
        sent["Content-Type"] = body.content_type
    sent.update(headers or {})
    data = body.data(ids) if body is not None else None
    return requests.request(endpoint.method, base + ids.fill(endpoint.path), data=data, headers=sent, timeout=30)


def case(case_id: str, raw: bytes | Callable[[Ids], bytes], status: int, code: str, **kw: object) -> object:
    return pytest.param(Body(raw, **kw), status, code, id=case_id)  # type: ignore[arg-type]


def sized(size: int) -> Callable[[Ids], bytes]:
    """An order body padded with an (unknown) field to exactly `size` bytes."""

    def make(ids: Ids) -> bytes:
        head = f'{{"product_id":"{ids.pid}","quantity":1,"pad":"'.encode()
        return head + b"x" * (size - len(head) - 2) + b'"}'

    return make


def order_q(value: str) -> bytes:
    return b'{"product_id":"@PID@","quantity":' + value.encode() + b"}"


def order_pid(value: str) -> bytes:
    return b'{"product_id":' + value.encode() + b',"quantity":1}'


def order_cid(value: str) -> bytes:
    return b'{"product_id":"@PID@","quantity":1,"customer_id":' + value.encode() + b"}"


LONG_ID = "a" * 65

# --- malformed bodies: every endpoint that takes a body ------------------------------------------------------------

BODY_ENDPOINTS = {
    "place_order": Endpoint("order", "POST", "/orders"),
    "check": Endpoint("inventory", "POST", "/inventory/check"),
    "reserve": Endpoint("inventory", "POST", "/inventory/reserve", "service"),
    "reserve_batch": Endpoint("inventory", "POST", "/inventory/reserve/batch", "service"),
    "release": Endpoint("inventory", "POST", "/inventory/release", "service"),
    "commit": Endpoint("inventory", "POST", "/inventory/commit", "service"),
    "restock": Endpoint("inventory", "POST", "/inventory/@PID@/restock", "admin"),
    "create_product": Endpoint("inventory", "POST", "/inventory", "admin"),
    "update_product": Endpoint("inventory", "PATCH", "/inventory/@PID@", "admin"),
}

# Bodies every endpoint refuses the same way, before its schema is looked at (the last one: by its schema).
# They name the test's product and a fresh order id, so a body wrongly accepted would show in the state checks.
MALFORMED = [
    case("NaN", b'{"order_id":"@OID@","product_id":"@PID@","quantity":NaN}', 400, "invalid_json"),
    case("Infinity", b'{"order_id":"@OID@","product_id":"@PID@","quantity":Infinity}', 400, "invalid_json"),
    case("minus_Infinity", b'{"order_id":"@OID@","product_id":"@PID@","quantity":-Infinity}', 400, "invalid_json"),
    case("invalid_utf8_byte", b'{"order_id":"@OID@","product_id":"@PID@\xff","quantity":1}', 400, "invalid_json"),
    case("overlong_utf8", b'{"order_id":"@OID@","product_id":"\xc0\xaf@PID@","quantity":1}', 400, "invalid_json"),
    case("lone_surrogate_escape", b'{"order_id":"@OID@","product_id":"\\ud800","quantity":1}', 400, "invalid_json"),
    case("truncated_json", b'{"order_id":"@OID@","product_id":"@PID@","quan', 400, "invalid_json"),
    case("empty_body", b"", 400, "invalid_json"),
    case("whitespace_body", b"  \r\n ", 400, "invalid_json"),
    case("array_body", b"[]", 400, "invalid_json"),
    case("string_body", b'"string"', 400, "invalid_json"),
    case("null_body", b"null", 400, "invalid_json"),
    case("number_body", b"1", 400, "invalid_json"),
    case("trailing_garbage", b'{"order_id":"@OID@","product_id":"@PID@","quantity":1} x', 400, "invalid_json"),
    case("single_quotes", b"{'order_id':'@OID@','product_id':'@PID@','quantity':1}", 400, "invalid_json"),
    case("deep_nesting_5000", b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),
    case("deep_nesting_in_field", order_q("[" * 5000 + "]" * 5000), 400, "invalid_json"),
    case("text_plain", b'{"order_id":"@OID@","product_id":"@PID@","quantity":1}', 415, "unsupported_media_type",
         content_type="text/plain"),
    case("form_urlencoded", b"order_id=@OID@&product_id=@PID@&quantity=1", 415, "unsupported_media_type",
         content_type="application/x-www-form-urlencoded"),
    case("multipart_form", b'--b\r\nContent-Disposition: form-data; name="product_id"\r\n\r\n@PID@\r\n--b--\r\n', 415,
         "unsupported_media_type", content_type="multipart/form-data; boundary=b"),
    case("no_content_type", b'{"order_id":"@OID@","product_id":"@PID@","quantity":1}', 415, "unsupported_media_type",
         content_type=None),
    case("json_lookalike_type", b'{"order_id":"@OID@","product_id":"@PID@","quantity":1}', 415,
         "unsupported_media_type", content_type="application/json-patch+json"),
    case("70KB_with_content_length", sized(70_000), 413, "payload_too_large"),
    case("70KB_chunked", sized(70_000), 413, "payload_too_large", chunked=True),
    case("70KB_text_plain", sized(70_000), 413, "payload_too_large", content_type="text/plain"),
    case("unknown_field_only", b'{"bogus":1}', 422, "validation_error"),
]  # fmt: skip


@pytest.mark.parametrize("endpoint", list(BODY_ENDPOINTS.values()), ids=list(BODY_ENDPOINTS))
@pytest.mark.parametrize(("body", "status", "code"), MALFORMED)
def test_malformed_body_is_refused_by_every_endpoint(
    api: Api, ids: Ids, endpoint: Endpoint, body: Body, status: int, code: str
) -> None:
    with nothing_moves(api, ids):
        assert_error(send(api, endpoint, ids, body), status, code)


# --- POST /orders: bodies that parse but break the schema -----------------------------------------------------------

ORDER_BODIES = [
    case("quantity_true", order_q("true"), 422, "validation_error"),
    case("quantity_false", order_q("false"), 422, "validation_error"),
    case("quantity_float_1.0", order_q("1.0"), 422, "validation_error"),
    case("quantity_float_1.5", order_q("1.5"), 422, "validation_error"),
    case("quantity_exponent_1e3", order_q("1e3"), 422, "validation_error"),
    case("quantity_string", order_q('"1"'), 422, "validation_error"),
    case("quantity_null", order_q("null"), 422, "validation_error"),
    case("quantity_list", order_q("[1]"), 422, "validation_error"),
    case("quantity_object", order_q('{"n":1}'), 422, "validation_error"),
    case("quantity_zero", order_q("0"), 422, "validation_error"),
    case("quantity_minus_one", order_q("-1"), 422, "validation_error"),
    case("quantity_10001", order_q(str(MAX_QUANTITY + 1)), 422, "validation_error"),
    case("quantity_2_pow_63", order_q(str(2**63)), 422, "validation_error"),
    case("quantity_2_pow_64", order_q(str(2**64)), 422, "validation_error"),
    case("quantity_10_pow_30", order_q(str(10**30)), 422, "validation_error"),
    case("quantity_minus_2_pow_63", order_q(str(-(2**63))), 422, "validation_error"),
    # 400 digits: past what the JSON parser represents (RFC 8259 section 6 lets it set the range); refused as JSON.
    case("quantity_400_digits", order_q("9" * 400), 400, "invalid_json"),
    case("quantity_missing", b'{"product_id":"@PID@"}', 422, "validation_error"),
    case("unknown_field", b'{"product_id":"@PID@","quantity":1,"discount":100}', 422, "validation_error"),
    case("product_id_65_chars", order_pid(f'"{LONG_ID}"'), 422, "validation_error"),
    case("product_id_with_space", order_pid('"P 001"'), 422, "validation_error"),
    case("product_id_with_slash", order_pid('"../@PID@"'), 422, "validation_error"),
    case("product_id_with_nul", order_pid('"@PID@\\u0000"'), 422, "validation_error"),
    case("product_id_with_newline", order_pid('"@PID@\\n"'), 422, "validation_error"),
    case("product_id_non_ascii", order_pid('"P\\u00e9"'), 422, "validation_error"),
    case("product_id_sql", order_pid("\"@PID@' OR '1'='1\""), 422, "validation_error"),
    case("product_id_empty", order_pid('""'), 422, "validation_error"),
    case("product_id_number", order_pid("1"), 422, "validation_error"),
    case("product_id_null", order_pid("null"), 422, "validation_error"),
    case("product_id_list", order_pid('["@PID@"]'), 422, "validation_error"),
    case("product_id_missing", b'{"quantity":1}', 422, "validation_error"),
    case("customer_id_with_slash", order_cid('"a/b"'), 422, "validation_error"),
    case("customer_id_65_chars", order_cid(f'"{LONG_ID}"'), 422, "validation_error"),
    case("customer_id_empty", order_cid('""'), 422, "validation_error"),
    case("customer_id_number", order_cid("123"), 422, "validation_error"),
    case("customer_id_null", order_cid("null"), 422, "validation_error"),
    case("customer_id_html", order_cid('"<script>"'), 422, "validation_error"),
    case("body_one_byte_over_64KiB", sized(LIMIT + 1), 413, "payload_too_large"),
    case("chunked_one_byte_over_64KiB", sized(LIMIT + 1), 413, "payload_too_large", chunked=True),
    # Exactly at the limit the body is read, and its padding field is what is refused.
    case("body_exactly_64KiB", sized(LIMIT), 422, "validation_error"),
    case("chunked_exactly_64KiB", sized(LIMIT), 422, "validation_error", chunked=True),
    case("empty_chunked_body", b"", 400, "invalid_json", chunked=True),
]


@pytest.mark.parametrize(("body", "status", "code"), ORDER_BODIES)
def test_place_order_refuses_body(api: Api, ids: Ids, body: Body, status: int, code: str) -> None:
    with nothing_moves(api, ids):
        assert_error(send(api, BODY_ENDPOINTS["place_order"], ids, body), status, code)


# --- inventory: bodies that parse but break each endpoint's schema -------------------------------------------------


def inv(endpoint: str, case_id: str, raw: bytes, status: int = 422, code: str = "validation_error") -> object:
    return pytest.param(BODY_ENDPOINTS[endpoint], Body(raw), status, code, id=f"{endpoint}-{case_id}")


def create_body(**fields: str) -> bytes:
    values = {"product_id": '"@NEW@"', "name": '"Widget"', "price": "1.5", "quantity": "10", **fields}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in values.items() if v != "") + "}").encode()


INVENTORY_BODIES = [
    inv("check", "quantity_zero", b'{"product_id":"@PID@","quantity":0}'),
    inv("check", "quantity_minus_one", b'{"product_id":"@PID@","quantity":-1}'),
    inv("check", "quantity_10001", b'{"product_id":"@PID@","quantity":10001}'),
    inv("check", "quantity_2_pow_63", b'{"product_id":"@PID@","quantity":9223372036854775808}'),
    inv("check", "quantity_bool", b'{"product_id":"@PID@","quantity":true}'),
    inv("check", "quantity_float", b'{"product_id":"@PID@","quantity":2.5}'),
    inv("check", "quantity_string", b'{"product_id":"@PID@","quantity":"2"}'),
    inv("check", "quantity_null", b'{"product_id":"@PID@","quantity":null}'),
    inv("check", "quantity_list", b'{"product_id":"@PID@","quantity":[2]}'),
    inv("check", "product_id_65_chars", f'{{"product_id":"{LONG_ID}","quantity":1}}'.encode()),
    inv("check", "product_id_bad_chars", b'{"product_id":"P*","quantity":1}'),
    inv("check", "product_id_empty", b'{"product_id":"","quantity":1}'),
    inv("check", "product_id_number", b'{"product_id":1,"quantity":1}'),
    inv("check", "unknown_field", b'{"product_id":"@PID@","quantity":1,"customer_id":"C1"}'),
    inv("reserve", "quantity_zero", b'{"order_id":"@OID@","product_id":"@PID@","quantity":0}'),
    inv("reserve", "quantity_minus_one", b'{"order_id":"@OID@","product_id":"@PID@","quantity":-1}'),
    inv("reserve", "quantity_10001", b'{"order_id":"@OID@","product_id":"@PID@","quantity":10001}'),
    inv("reserve", "quantity_bool", b'{"order_id":"@OID@","product_id":"@PID@","quantity":true}'),
    inv("reserve", "quantity_float", b'{"order_id":"@OID@","product_id":"@PID@","quantity":1.0}'),
    inv("reserve", "quantity_string", b'{"order_id":"@OID@","product_id":"@PID@","quantity":"1"}'),
    inv("reserve", "quantity_missing", b'{"order_id":"@OID@","product_id":"@PID@"}'),
    inv("reserve", "order_id_bad_chars", b'{"order_id":"@OID@ x","product_id":"@PID@","quantity":1}'),
    inv("reserve", "order_id_65_chars", f'{{"order_id":"{LONG_ID}","product_id":"@PID@","quantity":1}}'.encode()),
    inv("reserve", "order_id_number", b'{"order_id":7,"product_id":"@PID@","quantity":1}'),
    inv("reserve", "order_id_missing", b'{"product_id":"@PID@","quantity":1}'),
    inv("reserve", "product_id_bad_chars", b'{"order_id":"@OID@","product_id":"@PID@;","quantity":1}'),
    inv("reserve", "unknown_field", b'{"order_id":"@OID@","product_id":"@PID@","quantity":1,"force":true}'),
    inv("release", "quantity_zero", b'{"order_id":"@OID@","product_id":"@PID@","quantity":0}'),
    inv("release", "quantity_bool", b'{"order_id":"@OID@","product_id":"@PID@","quantity":true}'),
    inv("release", "quantity_float", b'{"order_id":"@OID@","product_id":"@PID@","quantity":1.5}'),
    inv("release", "quantity_string", b'{"order_id":"@OID@","product_id":"@PID@","quantity":"1"}'),
    inv("release", "order_id_bad_chars", b'{"order_id":"@OID@/.."}'),
    inv("release", "order_id_empty", b'{"order_id":""}'),
    inv("release", "order_id_missing", b'{"product_id":"@PID@"}'),
    inv("release", "product_id_number", b'{"order_id":"@OID@","product_id":5}'),
    inv("release", "unknown_field", b'{"order_id":"@OID@","all":true}'),
    inv("commit", "order_id_bad_chars", b'{"order_id":"@OID@%"}'),
    inv("commit", "order_id_65_chars", f'{{"order_id":"{LONG_ID}"}}'.encode()),
    inv("commit", "order_id_number", b'{"order_id":1}'),
    inv("commit", "order_id_missing", b"{}"),
    inv("commit", "unknown_field", b'{"order_id":"@OID@","product_id":"@PID@"}'),
    inv("restock", "quantity_zero", b'{"quantity":0}'),
    inv("restock", "quantity_minus_five", b'{"quantity":-5}'),
    inv("restock", "quantity_bool", b'{"quantity":true}'),
    inv("restock", "quantity_float", b'{"quantity":5.0}'),
    inv("restock", "quantity_string", b'{"quantity":"5"}'),
    inv("restock", "quantity_null", b'{"quantity":null}'),
    inv("restock", "quantity_over_max_restock", f'{{"quantity":{MAX_RESTOCK + 1}}}'.encode()),
    inv("restock", "quantity_2_pow_63", b'{"quantity":9223372036854775808}'),
    inv("restock", "quantity_missing", b"{}"),
    inv("restock", "unknown_field", b'{"quantity":5,"price":0}'),
    inv("create_product", "product_id_65_chars", create_body(product_id=f'"{LONG_ID}"')),
    inv("create_product", "product_id_bad_chars", create_body(product_id='"@NEW@!"')),
    inv("create_product", "product_id_empty", create_body(product_id='""')),
    inv("create_product", "product_id_number", create_body(product_id="42")),
    inv("create_product", "name_empty", create_body(name='""')),
    inv("create_product", "name_201_chars", create_body(name='"' + "n" * 201 + '"')),
    inv("create_product", "name_null", create_body(name="null")),
    inv("create_product", "name_number", create_body(name="7")),
    inv("create_product", "name_with_nul", create_body(name='"a\\u0000b"')),
    inv("create_product", "name_missing", create_body(name="")),
    inv("create_product", "price_string", create_body(price='"1.50"')),
    inv("create_product", "price_bool", create_body(price="true")),
    inv("create_product", "price_negative", create_body(price="-0.01")),
    inv("create_product", "price_three_decimals", create_body(price="1.001")),
    inv("create_product", "price_over_max", create_body(price="10000000000")),
    inv("create_product", "price_null", create_body(price="null")),
    inv("create_product", "quantity_minus_one", create_body(quantity="-1")),
    inv("create_product", "quantity_float", create_body(quantity="1.0")),
    inv("create_product", "quantity_bool", create_body(quantity="false")),
    inv("create_product", "quantity_over_max_restock", create_body(quantity=str(MAX_RESTOCK + 1))),
    inv("create_product", "unknown_field", create_body(reserved_quantity="5")),
    inv("create_product", "price_beyond_double", create_body(price="1e400"), 400, "invalid_json"),
    inv("update_product", "empty_object", b"{}"),
    inv("update_product", "only_nulls", b'{"name":null,"price":null}'),
    inv("update_product", "name_empty", b'{"name":""}'),
    inv("update_product", "name_201_chars", b'{"name":"' + b"n" * 201 + b'"}'),
    inv("update_product", "name_with_nul", b'{"name":"\\u0000"}'),
    inv("update_product", "name_number", b'{"name":1}'),
    inv("update_product", "price_negative", b'{"price":-1}'),
    inv("update_product", "price_three_decimals", b'{"price":0.001}'),
    inv("update_product", "price_string", b'{"price":"2"}'),
    inv("update_product", "stock_field", b'{"available_quantity":1000}'),
    inv("update_product", "product_id_field", b'{"product_id":"@NEW@"}'),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "code"), INVENTORY_BODIES)
def test_inventory_refuses_body(api: Api, ids: Ids, endpoint: Endpoint, body: Body, status: int, code: str) -> None:
    with nothing_moves(api, ids):
        assert_error(send(api, endpoint, ids, body), status, code)


# --- paths and methods ---------------------------------------------------------------------------------------------

UNNAMEABLE_ORDER_IDS = {
    "short_number": "ORD1",
    "nul": "%00",
    "ord_nul": "ORD%00",
    "invalid_utf8": "%FF",
    "non_ascii": "%E2%82%AC",
    "lower_case": "ord00000001",
    "negative": "ORD-1",
    "fullwidth_digits": "ORD%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%91",
    "300_digits": "9" * 300,
    "ORD_300_zeros": "ORD" + "0" * 300,
    "ORD_30_digits": "ORD" + "9" * 30,
}
UNNAMEABLE_PRODUCT_IDS = {
    "nul": "%00",
    "space": "a%20b",
    "invalid_utf8": "%FF",
    "non_ascii": "P%C3%A9",
    "65_chars": LONG_ID,
    "300_chars": "p" * 300,
}
PATH_CASES = [
    *(
        pytest.param(Endpoint("order", m, f"/orders/{v}", t), "order_not_found", id=f"{n}-{k}")
        for k, v in UNNAMEABLE_ORDER_IDS.items()
        for n, m, t in (("get", "GET", None), ("cancel", "DELETE", None))
    ),
    *(
        pytest.param(Endpoint("order", "POST", f"/orders/{v}/fulfil", "admin"), "order_not_found", id=f"fulfil-{k}")
        for k, v in UNNAMEABLE_ORDER_IDS.items()
    ),
    *(
        pytest.param(Endpoint("inventory", "GET", f"/inventory/reservations/{v}", "service"),
                     "reservation_not_found", id=f"reservation-{k}")
        for k, v in UNNAMEABLE_PRODUCT_IDS.items()
    ),
    *(
        pytest.param(Endpoint("inventory", "GET", f"/inventory/{v}"), "product_not_found", id=f"product-{k}")
        for k, v in UNNAMEABLE_PRODUCT_IDS.items()
    ),
    pytest.param(Endpoint("order", "GET", "/orders/ORD99999999"), "order_not_found", id="get-well_formed_but_absent"),
    pytest.param(Endpoint("order", "GET", "/nowhere"), "not_found", id="order-unknown_route"),
    pytest.param(Endpoint("order", "GET", "/orders/ORD00000001/items"), "not_found", id="order-unknown_subroute"),
    pytest.param(Endpoint("order", "POST", "/order"), "not_found", id="order-singular_route"),
    pytest.param(Endpoint("inventory", "GET", "/nowhere"), "not_found", id="inventory-unknown_route"),
    pytest.param(Endpoint("inventory", "POST", "/inventory/@PID@/nothing"), "not_found", id="inventory-unknown_sub"),
    pytest.param(Endpoint("inventory", "GET", "/inventory/reservations/"), "not_found", id="reservation-empty_id"),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "code"), PATH_CASES)
def test_path_that_names_nothing_is_404(api: Api, ids: Ids, endpoint: Endpoint, code: str) -> None:
    with nothing_moves(api, ids):
        assert_error(send(api, endpoint, ids), 404, code)


# Paths that take a body, with an id that cannot name anything, and a body that would be valid.
WRITES_TO_UNNAMEABLE = [
    pytest.param(Endpoint("inventory", method, path.format(v), "admin"), raw, id=f"{name}-{k}")
    for name, method, path, raw in (
        ("restock", "POST", "/inventory/{}/restock", b'{"quantity":5}'),
        ("update", "PATCH", "/inventory/{}", b'{"price":1}'),
    )
    for k, v in UNNAMEABLE_PRODUCT_IDS.items()
]


@pytest.mark.parametrize(("endpoint", "raw"), WRITES_TO_UNNAMEABLE)
def test_write_to_unnameable_product_is_404(api: Api, ids: Ids, endpoint: Endpoint, raw: bytes) -> None:
    with nothing_moves(api, ids):
        assert_error(send(api, endpoint, ids, Body(raw)), 404, "product_not_found")


WRONG_METHODS = [
    pytest.param("order", "PUT", "/orders", {"GET", "HEAD", "OPTIONS", "POST"}, id="PUT-orders"),
    pytest.param("order", "DELETE", "/orders", {"GET", "HEAD", "OPTIONS", "POST"}, id="DELETE-orders"),
    pytest.param("order", "PATCH", "/orders/ORD00000001", {"DELETE", "GET", "HEAD", "OPTIONS"}, id="PATCH-order"),
    pytest.param("order", "POST", "/orders/ORD00000001", {"DELETE", "GET", "HEAD", "OPTIONS"}, id="POST-order"),
    pytest.param("order", "GET", "/orders/ORD00000001/fulfil", {"OPTIONS", "POST"}, id="GET-fulfil"),
    pytest.param("order", "DELETE", "/orders/ORD00000001/fulfil", {"OPTIONS", "POST"}, id="DELETE-fulfil"),
    pytest.param("inventory", "DELETE", "/inventory/@PID@", {"GET", "HEAD", "OPTIONS", "PATCH"}, id="DELETE-product"),
    pytest.param("inventory", "PUT", "/inventory/@PID@", {"GET", "HEAD", "OPTIONS", "PATCH"}, id="PUT-product"),
    pytest.param("inventory", "DELETE", "/inventory", {"GET", "HEAD", "OPTIONS", "POST"}, id="DELETE-inventory"),
    pytest.param("inventory", "PUT", "/inventory/check", {"GET", "HEAD", "OPTIONS", "PATCH", "POST"}, id="PUT-check"),
    pytest.param("inventory", "PUT", "/inventory/reserve", {"GET", "HEAD", "OPTIONS", "PATCH", "POST"},
                 id="PUT-reserve"),
    pytest.param("inventory", "GET", "/inventory/@PID@/restock", {"OPTIONS", "POST"}, id="GET-restock"),
    pytest.param("inventory", "POST", "/inventory/reservations/@OID@", {"GET", "HEAD", "OPTIONS"},
                 id="POST-reservation"),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "path", "allowed"), WRONG_METHODS)
def test_wrong_method_is_405_with_allow(
    api: Api, ids: Ids, service: str, method: str, path: str, allowed: set[str]
) -> None:
    with nothing_moves(api, ids):
        r = send(api, Endpoint(service, method, path), ids, Body(b'{"quantity":1}'))
        assert_error(r, 405, "method_not_allowed")
        assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed


# --- headers and query strings -------------------------------------------------------------------------------------

BAD_IDEMPOTENCY_KEYS = [
    pytest.param(b"k" * 256, id="256_chars"),
    pytest.param("ключ".encode(), id="non_ascii_utf8"),
    pytest.param(b"caf\xe9", id="non_ascii_latin1"),
    pytest.param(b"a\tb", id="tab"),
    pytest.param(b"a\x7fb", id="delete_char"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("key", BAD_IDEMPOTENCY_KEYS)
def test_bad_idempotency_key_is_400(api: Api, ids: Ids, key: bytes) -> None:
    body = Body(b'{"product_id":"@PID@","quantity":1}')
    with nothing_moves(api, ids):
        r = send(api, BODY_ENDPOINTS["place_order"], ids, body, {"Idempotency-Key": key})
        if b"\x7f" in key and not r.content:
            # Not a valid header value (RFC 9110 5.5): the server's HTTP parser refuses it before the app
            # runs, with an empty 400 (never HTML); nothing moves.
            assert r.status_code == 400
        else:
            assert_error(r, 400, "invalid_idempotency_key")


def test_idempotency_key_of_255_printable_characters_is_accepted(api: Api, ids: Ids) -> None:
    """The other side of the bound above: the longest allowed key places the order, once."""
    key = (("~ !" + uuid.uuid4().hex) * 8)[:255]
    assert len(key) == 255 and key.isascii() and key.isprintable()
    first = api.place(ids.pid, 2, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    again = api.place(ids.pid, 2, headers={"Idempotency-Key": key})  # the stored answer, replayed
    assert again.status_code == 201 and again.json() == first.json(), again.text
    assert api.product(ids.pid)["available_quantity"] == 48


BAD_LIST_QUERIES = [
    "limit=0",
    "limit=1001",
    "limit=abc",
    "limit=1.5",
    "limit=",
    "limit=-1",
    "limit=99999999999999999999999",
    "offset=-1",
    "offset=abc",
    "status=bogus",
    "status=",
    "status=CONFIRMED",
    "customer_id=a%20b",
    "customer_id=" + LONG_ID,
    "customer_id=%00",
]


@pytest.mark.parametrize("query", BAD_LIST_QUERIES, ids=lambda q: q.replace("%", "pct") or "empty")
def test_bad_list_query_is_422(api: Api, ids: Ids, query: str) -> None:
    with nothing_moves(api, ids):
        r = requests.get(f"{api.order_url}/orders?{query}", timeout=10)
        assert_error(r, 422, "validation_error")


def test_largest_valid_quantity_is_accepted_by_check(api: Api, ids: Ids) -> None:
    """10000 is inside the bound that refuses 10001 above: the check answers, and holds nothing."""
    with nothing_moves(api, ids):
        r = api.http.post(
            f"{api.inventory_url}/inventory/check", json={"product_id": ids.pid, "quantity": MAX_QUANTITY}, timeout=10
        )
        assert r.status_code == 200, r.text
        assert r.json()["available"] is False and r.json()["requested_quantity"] == MAX_QUANTITY
