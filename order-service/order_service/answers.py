"""What a placed order is answered: the status and JSON bytes the saga stores with the order, so that an
idempotent retry is answered exactly the same bytes, whoever (a request or the worker) settled it."""

from __future__ import annotations

from flask import Response

from order_service import schemas
from order_service.domain import InventoryOutage, Order
from order_service.saga import Answer
from service_common.domain import DomainError
from service_common.errors import domain_body, domain_status
from service_common.jsonio import dumps

# A failed order's 503 is answered with this Retry-After, on the first answer and on every replay.
_RETRY_AFTER = {"Retry-After": str(InventoryOutage().retry_after)}


class HttpAnswers:
    """The saga's Answers, said in HTTP: 201 with the order, or the refusal as any error is answered."""

    def placed(self, order: Order) -> Answer:
        return Answer(201, dumps(schemas.order_json(order)))

    def refused(self, refusal: DomainError) -> Answer:
        return Answer(domain_status(refusal), domain_body(refusal))

    def describe(self, order: Order) -> bytes:
        return dumps(schemas.order_json(order))


def response(answer: Answer) -> Response:
    headers = _RETRY_AFTER if answer.status == 503 else {}
    return Response(answer.body, status=answer.status, headers=headers, mimetype="application/json")
