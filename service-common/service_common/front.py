"""What the production front (serving.BufferedFront) and the app it runs say to each other about a request.

The front puts a `FrontRun` in each environ it builds, under ENVIRON_KEY (PEP 3333 lets a server add keys
of its own). An app that finds it may answer with the header RUN_AGAIN_HEADER (seconds, a decimal) instead
of an answer: the front then sends nothing, waits that long in its event loop, holding no app thread, and
runs the same request again (the same head and body), until an answer comes without the header. The header
never reaches the client. Without a FrontRun (the WSGI test client, another server) there is no one to run
a request again: the app answers in one run.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

ENVIRON_KEY = "service_common.front"
RUN_AGAIN_HEADER = "X-Front-Run-Again"
_RUN_AGAIN_NAME = RUN_AGAIN_HEADER.lower()


# The front's spare threads (serving.BufferedFront) each run a request only when an app thread has lent its
# turn: one item in this queue is one turn. An app thread finds its front's queue here.
_turns = threading.local()


def serve_turns(turns: queue.SimpleQueue[None] | None) -> None:
    """Called by each of the front's threads once: where waits of the requests it runs lend their turn."""
    _turns.queue = turns


def wait_lending(lock: threading.Lock) -> None:
    """Acquire `lock`, held until other threads' work is done (a group commit), and meanwhile lend this
    thread's turn, so that a spare thread of the front runs another request: a batch can then gather
    more asks than the front has app threads. The turn is taken back if no one took it; if one did, this
    thread and the spare both run until the spare's request ends (at most THREADS + SPARE_THREADS run at
    once). Outside the front (the WSGI test client, another server) it only acquires the lock."""
    turns: queue.SimpleQueue[None] | None = getattr(_turns, "queue", None)
    if turns is None:
        lock.acquire()
        return
    turns.put(None)
    try:
        lock.acquire()
    finally:
        with contextlib.suppress(queue.Empty):  # empty: a spare thread took it
            turns.get_nowait()


def asks_to_run_again(headers: Iterable[tuple[str, str]]) -> bool:
    """Whether an answer's headers (a response's `headers`) carry RUN_AGAIN_HEADER, in any case. Not werkzeug's
    `in`, which raises and catches a KeyError for every answer without it (~2 us a request)."""
    return any(name.lower() == _RUN_AGAIN_NAME for name, _ in headers)


@dataclass(frozen=True)
class FrontRun:
    """One run of a request by the front."""

    since: float  # time.monotonic() when the front first ran this request (the same in every run)
    rerun: bool  # the request asked to be run again before: this is not its first run
    # How many requests of this process the front holds between runs now. Read as the app decides: the
    # requests in a first run at the same moment (at most THREADS) are not counted yet.
    waiting: Callable[[], int]
