"""Group commit of reserves: the reserves that arrive while one transaction runs share the next one.

A hot product's stock is one row; each transaction that changes it holds its lock until its commit is
durable, so one row takes only so many reserves a second, one per commit (pgbench's hot row). Here a
request thread queues its reserve and waits. One thread at a time leads: it takes up to `max_batch`
queued reserves (its own first), runs them as one transaction (storage.reserve_many), hands each its
outcome, then passes the lead to the thread at the head of the queue. No timer: a batch is whatever
queued while the previous one ran, so a lone reserve runs at once, alone.

This is only an efficiency of one process. Correctness (no oversell, once per order, tombstones) comes
from the database, as for a single reserve, so it holds across workers and replicas, each with its own
batcher. Each reserve is answered on its own (storage.settle), in its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inventory_service import storage
from inventory_service.domain import Line, Reserved

# Errors a batch can meet because of one of its reserves, not the database as a whole: the batch is then
# run again one reserve per transaction, so that reserve fails alone. (A database that is down or busy
# fails every reserve of the batch, as it would have failed each.)
_ONE_OF_THEM = (sa.exc.IntegrityError, sa.exc.DataError, storage.StockMoved)


@dataclass
class _Waiting:
    order_id: str
    lines: Sequence[Line]
    woken: threading.Event = field(default_factory=threading.Event)
    outcome: storage.Outcome | None = None  # None when woken: lead the next batch


class ReserveBatcher:
    """Reserves of this process, in batches of at most `max_batch` per transaction (1: each alone, no queue).
    `observe` is told how many reserves each transaction held."""

    def __init__(self, engine: Engine, max_batch: int, observe: Callable[[int], None] = lambda n: None) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._observe = observe
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._leading = False
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Reserves submitted and not yet decided: queued, or in the transaction that runs now."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def reserve(self, order_id: str, lines: Sequence[Line]) -> Reserved:
        if self.max_batch <= 1:
            (outcome,) = storage.reserve_many(self.engine, [(order_id, lines)])
            self._observe(1)
            return storage.settle(self.engine, order_id, lines, outcome)
        me = _Waiting(order_id, lines)
        with self._lock:
            self._queue.append(me)
            lead = not self._leading
            self._leading = True
        if not lead:
            me.woken.wait()
        if me.outcome is None:  # leading: at the head of the queue, so in the batch it takes
            self._run_batch()
        assert me.outcome is not None
        return storage.settle(self.engine, order_id, lines, me.outcome)

    def _run_batch(self) -> None:
        with self._lock:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            self._in_flight = len(batch)
        outcomes: list[storage.Outcome] = [RuntimeError("the batch was interrupted")] * len(batch)
        try:
            outcomes = self._decide(batch)
        except Exception as exc:  # nothing committed: every reserve of the batch is refused with it
            outcomes = [exc] * len(batch)
        finally:
            for waiting, outcome in zip(batch, outcomes, strict=True):
                waiting.outcome = outcome
                waiting.woken.set()
            with self._lock:
                self._in_flight = 0
                if self._queue:
                    self._queue[0].woken.set()  # its outcome is None: it leads the next batch
                else:
                    self._leading = False

    def _decide(self, batch: list[_Waiting]) -> list[storage.Outcome]:
        asks = [(w.order_id, w.lines) for w in batch]
        try:
            outcomes = storage.reserve_many(self.engine, asks)
        except _ONE_OF_THEM:
            if len(batch) == 1:
                raise
            outcomes = []
            for ask in asks:
                try:
                    outcomes += storage.reserve_many(self.engine, [ask])
                except _ONE_OF_THEM as exc:
                    outcomes.append(exc)
                self._observe(1)
            return outcomes
        self._observe(len(batch))
        return outcomes
