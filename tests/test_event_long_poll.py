"""Long polls on the production server wait in its event loop, not in app threads: three times as many
waiters as the process has threads leave orders and probes answered, an order wakes every waiter, and
one waiter more than EVENTS_MAX_WAITERS is told 429; a waiter that hangs up stops waiting.

One order process (`python -m order_service serve`, WEB_CONCURRENCY 1, THREADS 2), on SQLite: what is
tested is the server in front of the view, which does not depend on the engine.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from local.processes import wait_until
from service_common.front import RUN_AGAIN_HEADER
from tests.stack_client import Api
from tests.topology import ADMIN_TOKEN, stack

THREADS = 2
WAITERS = 3 * THREADS  # the cap, EVENTS_MAX_WAITERS
CLIENT_TIMEOUT = 10  # generous: an answer held behind the waiters would take up to their 20 s


def _read(url: str, timeout: float = CLIENT_TIMEOUT, **params: Any) -> requests.Response:
    r = requests.get(url, params=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=timeout)
    assert RUN_AGAIN_HEADER.lower() not in {name.lower() for name in r.headers}, r.headers
    return r


def _wait_for_event(url: str, after: str) -> requests.Response:
    """A consumer's long poll, coming back after Retry-After when the process has waiters enough."""
    while True:
        r = _read(url, timeout=60, after=after, wait=20)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers["Retry-After"]))


def test_long_polls_hold_no_app_thread_and_an_order_wakes_them(tmp_path: Path) -> None:
    order_env = {"WEB_CONCURRENCY": "1", "THREADS": str(THREADS), "EVENTS_MAX_WAITERS": str(WAITERS)}
    with stack(tmp_path, "sqlite", order_env=order_env) as s:
        api = Api.of(s)
        product = api.new_product(10)
        feed = f"{api.order_url}/events"
        end = _read(feed).json()["next"]
        # A poll that waits in vain ends with the empty page, from where it stood.
        r = _read(feed, after=end, wait=0.3)
        assert (r.status_code, r.json()) == (200, {"events": [], "next": end})

        with ThreadPoolExecutor(WAITERS) as pool:
            waiting = [pool.submit(_wait_for_event, feed, end) for _ in range(WAITERS)]

            # Once every waiter waits, one more is refused (a probe that got in first waits its second out).
            def one_more_is_refused() -> bool:
                r = _read(feed, after=end, wait=1)
                if r.status_code == 429:
                    assert r.json()["error"]["code"] == "too_many_waiters"
                    assert r.headers["Retry-After"] == "1"
                    return True
                assert (r.status_code, r.json()) == (200, {"events": [], "next": end})
                return False

            wait_until(one_more_is_refused, 60, f"{WAITERS} waiters, then a refusal")
            # Three waiters per app thread, and the threads still answer.
            assert requests.get(f"{api.order_url}/health/ready", timeout=CLIENT_TIMEOUT).status_code == 200
            placed = api.place(product, 1)
            assert placed.status_code == 201, placed.text
            answers = [f.result(timeout=60) for f in waiting]

        order_id = placed.json()["order_id"]
        for r in answers:
            assert r.status_code == 200, r.text
            assert [(e["type"], e["order_id"]) for e in r.json()["events"]] == [("order.confirmed", order_id)]


def test_a_waiter_that_hangs_up_stops_waiting(tmp_path: Path) -> None:
    """With one waiter allowed, a client that hangs up while waiting lets the next one wait at once."""
    order_env = {"WEB_CONCURRENCY": "1", "THREADS": str(THREADS), "EVENTS_MAX_WAITERS": "1"}
    with stack(tmp_path, "sqlite", order_env=order_env) as s:
        feed = f"{s.order.url}/events"
        end = _read(feed).json()["next"]
        with contextlib.suppress(requests.ReadTimeout):  # the client hangs up after 1 s
            _read(feed, timeout=1, after=end, wait=20)
        # The front watches for the hang-up: the slot is free long before that waiter's 20 s would end.
        wait_until(lambda: _read(feed, after=end, wait=0.1).status_code == 200, 10, "the hung-up waiter's slot")
