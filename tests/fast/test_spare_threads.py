"""The front's spare threads (serving.BufferedFront, front.wait_lending): while an app thread waits on a group
commit it lends its turn, and a spare thread runs another request, so one batch gathers more asks than the
front has app threads; a request that waits on nothing never runs on a spare thread.

Driven through the front itself (its ASGI entry, in an event loop of the test's own), with a WSGI app whose
requests are asks of a GroupCommit, the first batch held open until the test lets it go. No database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.processes import wait_until
from service_common.batching import GroupCommit
from service_common.serving import BufferedFront
from service_common.settings import Limits

LIMITS = Limits(
    header_read_timeout=10,
    body_read_timeout=10,
    max_body_bytes=65536,
    max_request_line=8192,
    max_header_bytes=16384,
    max_headers=100,
)


class HeldBatches:
    """A GroupCommit whose first batch waits for `release`; it records every batch and the thread of every
    request."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list[int]] = []
        self.threads: list[str] = []
        self.commit: GroupCommit[int, str] = GroupCommit(self._decide, max_batch=64)

    def _decide(self, asks: list[int]) -> list[str | Exception]:
        self.batches.append(list(asks))
        if len(self.batches) == 1:
            self.release.wait(timeout=60)
        return ["done"] * len(asks)

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.threads.append(threading.current_thread().name)
        if environ["PATH_INFO"] == "/ask":
            self.commit.submit(int(environ["QUERY_STRING"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def _requests(front: BufferedFront, targets: list[str]) -> tuple[threading.Thread, list[int]]:
    """Send the requests all at once through the front, in an event loop of their own; their statuses once
    the thread ends."""
    statuses: list[int] = []

    async def one(target: str) -> None:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [],
            "http_version": "1.1",
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await front(scope, receive, send)

    async def all_of_them() -> None:
        await asyncio.gather(*(one(t) for t in targets))

    loop_thread = threading.Thread(target=asyncio.run, args=(all_of_them(),), daemon=True)
    loop_thread.start()
    return loop_thread, statuses


@pytest.fixture
def held() -> Iterator[HeldBatches]:
    held = HeldBatches()
    yield held
    held.release.set()  # never leave a thread waiting on a failed test


def _four_asks(held: HeldBatches, front: BufferedFront, queued: int) -> list[int]:
    """Four asks sent at once through `front`, the first batch let go once `queued` of them are in the group
    commit: the size of each batch."""
    loop_thread, statuses = _requests(front, [f"/ask?{n}" for n in range(4)])
    wait_until(lambda: held.commit.pending == queued, 60, f"{queued} asks in the group commit", interval=0.005)
    held.release.set()
    loop_thread.join(timeout=60)
    assert statuses == [200] * 4
    return [len(batch) for batch in held.batches]


def test_waiting_requests_lend_their_turn_so_one_batch_gathers_more_asks_than_app_threads(held: HeldBatches) -> None:
    # Two app threads: one leads the first batch, which is held; the other waits for the next and lends its
    # turn; each spare thread that takes a turn runs a request that waits too, and lends its own, so all
    # four asks are in at once.
    front = BufferedFront(held.app, LIMITS, threads=2, spare_threads=2)
    assert _four_asks(held, front, queued=4) == [1, 3]
    assert sorted(held.threads) == ["app_0", "app_1", "spare_0", "spare_1"]


def test_without_spare_threads_each_app_thread_holds_one_ask(held: HeldBatches) -> None:
    front = BufferedFront(held.app, LIMITS, threads=1, spare_threads=0)
    assert _four_asks(held, front, queued=1) == [1, 1, 1, 1]


def test_requests_that_wait_on_nothing_run_on_app_threads_only(held: HeldBatches) -> None:
    front = BufferedFront(held.app, LIMITS, threads=2, spare_threads=4)
    loop_thread, statuses = _requests(front, ["/plain"] * 50)
    loop_thread.join(timeout=60)
    assert statuses == [200] * 50
    assert set(held.threads) <= {"app_0", "app_1"}
