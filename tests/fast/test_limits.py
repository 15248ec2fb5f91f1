"""Each limit is one setting, enforced and documented from the same value: in-process, with the limits set
low so that the same value shows in the answer and in the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from tests.inprocess import ADMIN, SERVICE, Templates, services


def test_quantity_limits_come_from_the_settings_in_answers_and_documents(templates: Templates, tmp_path: Path) -> None:
    with services(templates, tmp_path, {"max_quantity": 7}) as apps:
        product = apps.new_product(100)
        r = apps.place(product, 8)
        assert (r.status_code, r.json["error"]) == (
            422,
            {"code": "validation_error", "message": "quantity: must be at most 7"},
        )
        assert apps.place(product, 7).status_code == 201
        doc = apps.order.test_client().get("/openapi.json").json
        assert doc["components"]["schemas"]["CreateOrderRequest"]["properties"]["quantity"]["maximum"] == 7


def test_inventory_limits_are_documented_as_configured(templates: Templates, tmp_path: Path) -> None:
    with services(templates, tmp_path) as apps:
        schemas = apps.inventory.test_client().get("/openapi.json").json["components"]["schemas"]
        assert schemas["ReserveRequest"]["properties"]["quantity"]["maximum"] == 10_000
        assert schemas["CheckRequest"]["properties"]["quantity"]["maximum"] == 10_000
        assert schemas["RestockRequest"]["properties"]["quantity"]["maximum"] == 1_000_000_000
        assert schemas["CreateProductRequest"]["properties"]["quantity"]["maximum"] == 1_000_000_000
        product = apps.new_product(1)
        client = apps.inventory.test_client()
        over = client.post(f"/inventory/{product}/restock", json={"quantity": 1_000_000_001}, headers=ADMIN)
        assert (over.status_code, over.json["error"]["message"]) == (422, "quantity: must be at most 1000000000")
        body = {"order_id": "ORD1", "product_id": product, "quantity": 10_001}
        r = client.post("/inventory/reserve", json=body, headers=SERVICE)
        assert (r.status_code, r.json["error"]["message"]) == (422, "quantity: must be at most 10000")


def test_a_body_that_breaks_the_schema_is_answered_the_schema_errors_first(
    templates: Templates, tmp_path: Path
) -> None:
    with services(templates, tmp_path) as apps:
        r = apps.order.test_client().post("/orders", json={"product_id": "P001", "quantity": 10_001, "extra": 1})
        assert r.status_code == 422
        assert r.json["error"]["message"] == "extra: Extra inputs are not permitted"
