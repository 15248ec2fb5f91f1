"""JSON in and out: strict parsing (orjson: no NaN, valid UTF-8 only) and exact money on the wire."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Two decimals, as a JSON number: 15.00 stays 15.00, never 15.0 or "15.00".
        return orjson.Fragment(format(value.quantize(Decimal("0.01")), "f"))
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status=status, headers=headers, mimetype="application/json")


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider on orjson, which refuses NaN/Infinity, invalid UTF-8 and lone surrogates."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(dumps(obj), mimetype="application/json")
