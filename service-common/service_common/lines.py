"""The two shapes of a request that names stock, shared by both services' request models: one product
(`product_id` and `quantity`, the shape from before carts) or `items`, a list of lines. Exactly one shape,
each product at most once; the OpenAPI document says the same as far as JSON Schema can."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SHAPE_FIELDS = ("product_id", "quantity", "items")

_ONE_PRODUCT = {"required": ["product_id", "quantity"], "not": {"required": ["items"]}}
_LINES = {"required": ["items"], "not": {"anyOf": [{"required": ["product_id"]}, {"required": ["quantity"]}]}}


def document_shapes(schema: dict[str, Any], *, example: dict[str, Any]) -> None:
    """json_schema_extra of such a model: its optional shape fields documented without null (a field is
    given or left out, never null), exactly one shape required, and the example."""
    properties = schema.get("properties", {})
    for name in SHAPE_FIELDS:
        field = properties.get(name)
        if field is None or "anyOf" not in field:
            continue
        (given,) = [s for s in field.pop("anyOf") if s.get("type") != "null"]
        field.pop("default", None)
        properties[name] = {**given, **field}
    schema["oneOf"] = [_ONE_PRODUCT, _LINES]
    schema["example"] = example


def refuse_nulls(data: Any) -> Any:
    """Before validation: a shape field sent as null is refused (the document does not allow it)."""
    if isinstance(data, dict):
        nulls = [name for name in SHAPE_FIELDS if name in data and data[name] is None]
        if nulls:
            raise ValueError(f"{nulls[0]}: may not be null; leave it out")
    return data


def check_shape(product_id: str | None, quantity: int | None, products: Sequence[str] | None) -> None:
    """After validation: one shape exactly, and no product twice among the lines."""
    one = product_id is not None or quantity is not None
    if one and products is not None:
        raise ValueError("give either items or product_id and quantity, not both")
    if not one and products is None:
        raise ValueError("give items, or product_id and quantity")
    if one and (product_id is None or quantity is None):
        raise ValueError("product_id and quantity go together")
    if products is not None and len(set(products)) != len(products):
        raise ValueError("items: each product at most once")
