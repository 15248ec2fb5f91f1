"""CUSTOMER_AUTH=jwt: a customer is the verified JWT's subject and sees only their own orders; the admin
token sees all; tokens with a bad signature, algorithm, audience or expiry are refused."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import Api
from tests.topology import ADMIN_TOKEN, Stack, stack

AUDIENCE = "order-service"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(sub: str, *, key: Any = _KEY, aud: str = AUDIENCE, exp_in: float = 300, alg: str = "RS256") -> str:
    claims = {"sub": sub, "aud": aud, "exp": int(time.time() + exp_in), "iat": int(time.time())}
    return jwt.encode(claims, key, algorithm=alg)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = Path(tmp_path_factory.mktemp("jwt"))
    public = workdir / "customers.pem"
    public.write_bytes(
        _KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    env = {"CUSTOMER_AUTH": "jwt", "JWT_PUBLIC_KEY_FILE": str(public), "JWT_AUDIENCE": AUDIENCE}
    with stack(workdir, "sqlite", order_env=env) as s:
        yield s


def _place(api: Api, headers: dict[str, str], customer_id: str | None = None, **extra: str) -> requests.Response:
    body: dict[str, Any] = {"product_id": "P003", "quantity": 1}
    if customer_id:
        body["customer_id"] = customer_id
    return requests.post(f"{api.order_url}/orders", json=body, headers={**headers, **extra}, timeout=10)


def test_customer_is_the_token_subject_whatever_the_body_says(api: Api) -> None:
    r = _place(api, bearer(token("alice")), customer_id="mallory")
    assert r.status_code == 201, r.text
    assert r.json()["customer_id"] == "alice"


def test_customers_see_only_their_own_orders(api: Api) -> None:
    mine = _place(api, bearer(token("bob"))).json()
    theirs = _place(api, bearer(token("carol"))).json()
    as_bob = bearer(token("bob"))
    assert requests.get(f"{api.order_url}/orders/{mine['order_id']}", headers=as_bob, timeout=10).status_code == 200
    other = requests.get(f"{api.order_url}/orders/{theirs['order_id']}", headers=as_bob, timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "order_not_found"
    cancel = requests.delete(f"{api.order_url}/orders/{theirs['order_id']}", headers=as_bob, timeout=10)
    assert cancel.status_code == 404
    listed = requests.get(f"{api.order_url}/orders", headers=as_bob, timeout=10).json()
    assert {o["customer_id"] for o in listed["orders"]} == {"bob"}
    asked = requests.get(f"{api.order_url}/orders", params={"customer_id": "carol"}, headers=as_bob, timeout=10)
    assert asked.json() == {"orders": [], "total_count": 0}
    mine_cancel = requests.delete(f"{api.order_url}/orders/{mine['order_id']}", headers=as_bob, timeout=10)
    assert mine_cancel.status_code == 200
    theirs_now = requests.get(
        f"{api.order_url}/orders/{theirs['order_id']}", headers=bearer(ADMIN_TOKEN), timeout=10
    ).json()
    assert theirs_now["status"] == "confirmed"


def test_admin_token_sees_every_customer(api: Api) -> None:
    _place(api, bearer(token("dave")))
    _place(api, bearer(token("erin")))
    listed = requests.get(f"{api.order_url}/orders?limit=1000", headers=bearer(ADMIN_TOKEN), timeout=10).json()
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
def test_invalid_customer_tokens_are_refused_and_change_nothing(api: Api, bad: str | None) -> None:
    before = requests.get(f"{api.order_url}/orders", headers=bearer(ADMIN_TOKEN), timeout=10).json()["total_count"]
    headers = bearer(bad) if bad else {}
    r = _place(api, headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert requests.get(f"{api.order_url}/orders", headers=headers, timeout=10).status_code == 401
    after = requests.get(f"{api.order_url}/orders", headers=bearer(ADMIN_TOKEN), timeout=10).json()["total_count"]
    assert after == before


def test_idempotency_keys_are_scoped_to_the_customer(api: Api) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    a = _place(api, bearer(token("gina")), **key)
    b = _place(api, bearer(token("hank")), **key)
    again = _place(api, bearer(token("gina")), **key)
    assert a.status_code == b.status_code == again.status_code == 201
    assert a.json()["order_id"] != b.json()["order_id"]
    assert again.json() == a.json()
