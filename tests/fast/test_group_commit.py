"""GroupCommit's contract (service_common.batching), which both the order service's writes and inventory's
reserves stand on: a batch that fails because of one ask is decided again one ask at a time, so that ask
fails alone; an error of the whole database refuses the whole batch; each ask gets its own outcome."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from local.processes import wait_until
from service_common.batching import GroupCommit


class Broken(Exception):
    """What one ask does to a batch (a constraint it breaks)."""


class Down(Exception):
    """What the whole database does (it is down)."""


class Decider:
    """Decides batches of strings: "bad" breaks any batch it is in; "down" (once `down` is set) fails
    whatever call it is in. Records each batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down_from: int | None = None  # the call from which "down" fails

    def __call__(self, asks: list[str]) -> list[str | Exception]:
        self.batches.append(list(asks))
        if "hold" in asks:
            release.wait(timeout=60)
        if "down" in asks and self.down_from is not None and len(self.batches) >= self.down_from:
            raise Down("the database is down")
        if "bad" in asks:
            raise Broken("bad broke a constraint")
        return [f"{a}: done" for a in asks]


release = threading.Event()


def batch_of(decider: Decider, asks: list[str], **kw: object) -> tuple[list[str | Exception], list[int]]:
    """Submit `asks` while a first ask holds the lead, so that they queue and form one batch; their
    outcomes, and what `observe` was told."""
    observed: list[int] = []
    group: GroupCommit[str, str] = GroupCommit(decider, 64, observe=observed.append, **kw)  # type: ignore[arg-type]
    release.clear()
    with ThreadPoolExecutor(len(asks) + 1) as pool:
        holder = pool.submit(group.submit, "hold")
        futures = []
        for ask in asks:  # in this order in the queue
            futures.append(pool.submit(group.submit, ask))
            wait_until(lambda: group.pending >= len(futures) + 1, 60, "the ask queued", interval=0.005)
        release.set()
        assert holder.result(timeout=60) == "hold: done"
        outcomes = [f.result(timeout=60) for f in futures]
    assert decider.batches[1] == asks  # they did queue into one batch
    return outcomes, observed[1:]


def test_an_ask_that_breaks_its_batch_fails_alone() -> None:
    decider = Decider()
    outcomes, observed = batch_of(decider, ["a", "bad", "c"], alone=lambda exc: isinstance(exc, Broken))
    assert outcomes[0] == "a: done" and outcomes[2] == "c: done"
    assert isinstance(outcomes[1], Broken)
    assert decider.batches[2:] == [["a"], ["bad"], ["c"]]  # decided again, one per call
    assert observed == [1, 1, 1]


def test_an_error_not_of_one_ask_refuses_the_whole_batch() -> None:
    decider = Decider()
    outcomes, observed = batch_of(decider, ["a", "bad", "c"])  # no error may be one ask's
    assert all(isinstance(o, Broken) for o in outcomes)
    assert decider.batches[2:] == []  # not decided again
    assert observed == []  # nothing was committed


def test_asks_decided_again_keep_their_own_outcomes_when_the_database_then_fails() -> None:
    """The batch breaks on "bad"; while its asks are decided again one by one the database goes down:
    the ask decided before that keeps its outcome (it was committed), the others get the error."""
    decider = Decider()
    decider.down_from = 5  # calls: hold, the batch, "a", "bad", then "down" fails
    outcomes, observed = batch_of(decider, ["a", "bad", "down"], alone=lambda exc: isinstance(exc, Broken))
    assert outcomes[0] == "a: done"
    assert isinstance(outcomes[1], Broken)
    assert isinstance(outcomes[2], Down)
    assert observed == [1, 1, 1]


def test_asks_submitted_together_share_a_batch_and_are_answered_in_order() -> None:
    """Several asks of one submitter (inventory's batch route) go whole into one batch, up to max_batch with
    others; more than max_batch make a batch of their own."""
    decider = Decider()
    group: GroupCommit[str, str] = GroupCommit(decider, 4)  # type: ignore[arg-type]
    release.clear()
    with ThreadPoolExecutor(4) as pool:
        holder = pool.submit(group.submit, "hold")
        wait_until(lambda: group.pending == 1, 60, "the asks to queue", interval=0.005)
        first = pool.submit(group.submit_all, ["a", "b", "c"])
        wait_until(lambda: group.pending == 4, 60, "the asks to queue", interval=0.005)
        second = pool.submit(group.submit_all, ["d", "e"])  # would make 5 with the first: the next batch
        wait_until(lambda: group.pending == 6, 60, "the asks to queue", interval=0.005)
        third = pool.submit(group.submit_all, ["f", "g", "h", "i", "j"])  # more than 4: a batch of its own
        wait_until(lambda: group.pending == 11, 60, "the asks to queue", interval=0.005)
        release.set()
        assert holder.result(timeout=60) == "hold: done"
        assert first.result(timeout=60) == ["a: done", "b: done", "c: done"]
        assert second.result(timeout=60) == ["d: done", "e: done"]
        assert third.result(timeout=60) == ["f: done", "g: done", "h: done", "i: done", "j: done"]
    assert decider.batches == [["hold"], ["a", "b", "c"], ["d", "e"], ["f", "g", "h", "i", "j"]]
    assert group.submit_all([]) == []
