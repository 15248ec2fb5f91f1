"""Group commit of reserves (service_common.batching): the reserves that arrive while one transaction
runs share the next one, decided together by storage.reserve_many.

A hot product's stock is one row; each transaction that changes it holds its lock until its commit is
durable, so one row takes only so many reserves a second, one per commit (pgbench's hot row). Correctness
(no oversell, once per order, tombstones) comes from the database, as for a single reserve, so it holds
across workers and replicas, each with its own batcher. Each reserve is answered on its own
(storage.settle), in its own thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inventory_service import storage
from inventory_service.domain import Line, Reserved
from service_common.batching import GroupCommit
from service_common.domain import DomainError

# Errors a batch can meet because of one of its reserves, not the database as a whole: the batch is then
# run again one reserve per transaction, so that reserve fails alone. (A database that is down or busy
# fails every reserve of the batch, as it would have failed each.)
_ONE_OF_THEM = (sa.exc.IntegrityError, sa.exc.DataError, storage.StockMoved)

_Ask = tuple[str, Sequence[Line]]


class ReserveBatcher:
    """Reserves of this process, in batches of at most `max_batch` per transaction (1: each alone, no queue).
    `observe` is told how many reserves each transaction held."""

    def __init__(self, engine: Engine, max_batch: int, observe: Callable[[int], None] = lambda n: None) -> None:
        self.engine = engine
        self._group: GroupCommit[_Ask, Reserved] = GroupCommit(
            self._decide, max_batch, alone=lambda exc: isinstance(exc, _ONE_OF_THEM), observe=observe
        )

    @property
    def pending(self) -> int:
        """Reserves submitted and not yet decided: queued, or in the transaction that runs now."""
        return self._group.pending

    def reserve(self, order_id: str, lines: Sequence[Line]) -> Reserved:
        return storage.settle(self.engine, order_id, lines, self._group.submit((order_id, lines)))

    def reserve_all(self, asks: Sequence[_Ask]) -> list[Reserved | DomainError]:
        """Several reserves at once (inventory's batch route), decided in the same transaction: each its
        reservation or its own refusal."""
        outcomes = self._group.submit_all(list(asks))
        answers: list[Reserved | DomainError] = []
        for (order_id, lines), outcome in zip(asks, outcomes, strict=True):
            try:
                answers.append(storage.settle(self.engine, order_id, lines, outcome))
            except DomainError as refusal:
                answers.append(refusal)
        return answers

    def _decide(self, asks: list[_Ask]) -> list[storage.Outcome]:
        return storage.reserve_many(self.engine, asks)
