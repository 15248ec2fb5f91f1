"""CUSTOMER_AUTH=jwt, in-process: a customer is the verified JWT's subject and sees only their own orders;
the admin token sees all; tokens with a bad signature, algorithm, audience or expiry are refused.
(Moved from tests/test_customer_auth.py, which ran one SQLite stack of processes.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.test import TestResponse

from tests.inprocess import ADMIN, Services, Templates, services

AUDIENCE = "order-service"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(sub: str, *, key: Any = _KEY, aud: str = AUDIENCE, exp_in: float = 300, alg: str = "RS256") -> str:
    claims = {"sub": sub, "aud": aud, "exp": int(time.time() + exp_in), "iat": int(time.time())}
    return jwt.encode(claims, key, algorithm=alg)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def jwt_apps(templates: Templates, tmp_path: Path) -> Iterator[Services]:
    public = tmp_path / "customers.pem"
    public.write_bytes(
        _KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    env = {"customer_auth": "jwt", "jwt_public_key_file": public, "jwt_audience": AUDIENCE}
    with services(templates, tmp_path, env) as s:
        yield s


def _place(apps: Services, headers: dict[str, str], customer_id: str | None = None, **extra: str) -> TestResponse:
    body: dict[str, Any] = {"product_id": "P003", "quantity": 1}
    if customer_id:
        body["customer_id"] = customer_id
    return apps.order.test_client().post("/orders", json=body, headers={**headers, **extra})


def test_customer_is_the_token_subject_whatever_the_body_says(jwt_apps: Services) -> None:
    r = _place(jwt_apps, bearer(token("alice")), customer_id="mallory")
    assert r.status_code == 201, r.text
    assert r.json["customer_id"] == "alice"


def test_customers_see_only_their_own_orders(jwt_apps: Services) -> None:
    client = jwt_apps.order.test_client()
    mine = _place(jwt_apps, bearer(token("bob"))).json
    theirs = _place(jwt_apps, bearer(token("carol"))).json
    as_bob = bearer(token("bob"))
    assert client.get(f"/orders/{mine['order_id']}", headers=as_bob).status_code == 200
    other = client.get(f"/orders/{theirs['order_id']}", headers=as_bob)
    assert other.status_code == 404 and other.json["error"]["code"] == "order_not_found"
    assert client.delete(f"/orders/{theirs['order_id']}", headers=as_bob).status_code == 404
    listed = client.get("/orders", headers=as_bob).json
    assert {o["customer_id"] for o in listed["orders"]} == {"bob"}
    asked = client.get("/orders?customer_id=carol", headers=as_bob)
    assert asked.json == {"orders": [], "total_count": 0}
    assert client.delete(f"/orders/{mine['order_id']}", headers=as_bob).status_code == 200
    assert client.get(f"/orders/{theirs['order_id']}", headers=ADMIN).json["status"] == "confirmed"


def test_a_cart_belongs_to_the_token_subject_and_only_they_see_it(jwt_apps: Services) -> None:
    client = jwt_apps.order.test_client()
    cart = {"items": [{"product_id": "P002", "quantity": 1}, {"product_id": "P003", "quantity": 2}]}
    placed = client.post("/orders", json={**cart, "customer_id": "mallory"}, headers=bearer(token("ivy")))
    assert placed.status_code == 201 and placed.json["customer_id"] == "ivy"
    order_id = placed.json["order_id"]
    assert client.get(f"/orders/{order_id}", headers=bearer(token("jack"))).status_code == 404
    assert client.delete(f"/orders/{order_id}", headers=bearer(token("jack"))).status_code == 404
    assert client.post("/orders", json=cart).status_code == 401
    assert client.delete(f"/orders/{order_id}", headers=bearer(token("ivy"))).json["status"] == "cancelled"


def test_admin_token_sees_every_customer(jwt_apps: Services) -> None:
    _place(jwt_apps, bearer(token("dave")))
    _place(jwt_apps, bearer(token("erin")))
    listed = jwt_apps.order.test_client().get("/orders?limit=1000", headers=ADMIN).json
    assert {"dave", "erin"} <= {o["customer_id"] for o in listed["orders"]}


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(None, id="no-token"),
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param(token("frank", key=_OTHER_KEY), id="wrong-key"),
        pytest.param(token("frank", aud="someone-else"), id="wrong-audience"),
        pytest.param(token("frank", exp_in=-3600), id="expired"),
        pytest.param(jwt.encode({"sub": "frank", "aud": AUDIENCE, "exp": time.time() + 60}, "s" * 32), id="hs256"),
        pytest.param(jwt.encode({"sub": "frank", "aud": AUDIENCE}, _KEY, algorithm="RS256"), id="no-expiry"),
        pytest.param(token("bad id!"), id="bad-subject"),
    ],
)
def test_invalid_customer_tokens_are_refused_and_change_nothing(jwt_apps: Services, bad: str | None) -> None:
    client = jwt_apps.order.test_client()
    before = client.get("/orders", headers=ADMIN).json["total_count"]
    headers = bearer(bad) if bad else {}
    r = _place(jwt_apps, headers)
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"
    assert client.get("/orders", headers=headers).status_code == 401
    assert client.get("/orders", headers=ADMIN).json["total_count"] == before


def test_idempotency_keys_are_scoped_to_the_customer(jwt_apps: Services) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    a = _place(jwt_apps, bearer(token("gina")), **key)
    b = _place(jwt_apps, bearer(token("hank")), **key)
    again = _place(jwt_apps, bearer(token("gina")), **key)
    assert a.status_code == b.status_code == again.status_code == 201
    assert a.json["order_id"] != b.json["order_id"]
    assert again.get_data() == a.get_data()
