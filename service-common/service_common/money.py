"""One money type: an exact Decimal in storage and arithmetic, a JSON number with two decimals on the wire."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated

from pydantic import Field, PlainSerializer, WithJsonSchema

CENT = Decimal("0.01")
MAX_PRICE = 9_999_999_999.99  # NUMERIC(12, 2)


def to_money(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_EVEN)


# Pydantic would document and emit a Decimal as a string; ours is a number in both directions.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2),
    PlainSerializer(lambda d: float(d), return_type=float, when_used="json"),
    WithJsonSchema({"type": "number", "multipleOf": 0.01, "minimum": 0, "example": 999.99}),
]

# A price as a client sends it: a JSON number, integer or not. Two decimals at most is checked exactly
# where the price is used (a binary float cannot say it); the document says it as multipleOf 0.01.
MoneyIn = Annotated[
    float | int,
    Field(ge=0, le=MAX_PRICE),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": MAX_PRICE, "multipleOf": 0.01, "example": 19.99}),
]
