"""Group commit: the asks that arrive while one transaction runs share the next one.

Each transaction that writes holds its locks (SQLite: the one writer; PostgreSQL: the rows it changed)
until its commit is durable, so a database takes only so many transactions a second however little each
does. Here a request thread queues its ask and waits. One thread at a time leads: it takes up to
`max_batch` queued asks (its own first), has `decide` run them as one transaction, hands each its
outcome, then passes the lead to the thread at the head of the queue. No timer: a batch is whatever
queued while the previous one ran, so a lone ask runs at once, alone. A thread may queue several asks at
once (submit_all: inventory's batch route), which go whole into one batch.

The same machinery gathers the order service's reserves into one call to inventory (inventory_client):
there `decide` is that call, not a transaction.

This is only an efficiency of one process. Correctness comes from the database (conditional updates,
constraints), as for a single transaction, so it holds across workers and replicas, each with its own
batcher. Each ask is answered on its own, in its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service_common.front import wait_lending

Ask = TypeVar("Ask")
Outcome = TypeVar("Outcome")


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Waiting(Generic[Ask, Outcome]):
    """A submitter's queued asks (one, or several at once). `woken` is a lock created held: the submitter
    waits by acquiring it, and it is released once, to wake it (an Event does the same through a Condition:
    several times the CPU per hand-off)."""

    asks: list[Ask]
    woken: threading.Lock = field(default_factory=_held_lock)
    done: bool = False  # False when woken: lead the next batch
    outcomes: list[Outcome | Exception] = field(default_factory=list)


class GroupCommit(Generic[Ask, Outcome]):
    """Asks of this process, in batches of at most `max_batch` per call of `decide` (1: each alone, no queue).

    `decide` runs a batch as one transaction and gives one outcome per ask, in order (an exception as an
    outcome refuses that ask alone). When it raises an error that `alone` says may belong to one of the
    asks (a constraint one of them broke), nothing was committed and the batch is decided again one ask per
    call, so that ask fails alone and the others go through. Any other error (the database is down) refuses
    every ask of the batch with it. `observe` is told how many asks each call of `decide` that ended well,
    or each call with one ask, held.
    """

    def __init__(
        self,
        decide: Callable[[list[Ask]], list[Outcome | Exception]],
        max_batch: int,
        *,
        alone: Callable[[Exception], bool] = lambda exc: False,
        observe: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._decide = decide
        self._alone = alone
        self._observe = observe
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting[Ask, Outcome]] = []
        self._leading = False
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Asks submitted and not yet decided: queued, or in the batch that runs now."""
        with self._lock:
            return sum(len(waiting.asks) for waiting in self._queue) + self._in_flight

    def submit(self, ask: Ask) -> Outcome | Exception:
        """The ask's outcome, once the transaction that decided it has ended."""
        return self.submit_all([ask])[0]

    def submit_all(self, asks: list[Ask]) -> list[Outcome | Exception]:
        """Several asks of one submitter, decided in the same batch (one batch of their own when they are
        more than `max_batch`): their outcomes, in order."""
        if not asks:
            return []
        if self.max_batch <= 1:
            return [self._run([ask])[0] for ask in asks]
        me: _Waiting[Ask, Outcome] = _Waiting(asks)
        with self._lock:
            self._queue.append(me)
            lead = not self._leading
            self._leading = True
        if not lead:
            wait_lending(me.woken)  # a spare thread of the front may run another request meanwhile
        if not me.done:  # leading: at the head of the queue, so in the batch it takes
            self._lead()
        assert me.done
        return me.outcomes

    def _run(self, asks: list[Ask]) -> list[Outcome | Exception]:
        try:
            outcomes = self._decide(asks)
        except Exception as exc:  # nothing committed
            if len(asks) > 1 and self._alone(exc):
                return [self._one(ask) for ask in asks]
            return [exc] * len(asks)
        self._observe(len(asks))
        return outcomes

    def _one(self, ask: Ask) -> Outcome | Exception:
        """An ask of a batch that failed, decided again on its own: its outcome or its own error."""
        try:
            return self._decide([ask])[0]
        except Exception as exc:
            return exc
        finally:
            self._observe(1)

    def _lead(self) -> None:
        with self._lock:
            # Whole submitters, up to max_batch asks (the first whatever its size).
            taken, size = 0, 0
            for waiting in self._queue:
                if taken and size + len(waiting.asks) > self.max_batch:
                    break
                taken, size = taken + 1, size + len(waiting.asks)
            batch = self._queue[:taken]
            del self._queue[:taken]
            self._in_flight = size
        asks = [ask for waiting in batch for ask in waiting.asks]
        outcomes: list[Outcome | Exception] = [RuntimeError("the batch was interrupted")] * len(asks)
        try:
            outcomes = self._run(asks)
        finally:
            at = 0
            for waiting in batch:
                waiting.outcomes = outcomes[at : at + len(waiting.asks)]
                at += len(waiting.asks)
                waiting.done = True
                waiting.woken.release()
            with self._lock:
                self._in_flight = 0
                if self._queue:
                    self._queue[0].woken.release()  # not done: it leads the next batch
                else:
                    self._leading = False
