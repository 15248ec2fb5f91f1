"""The feed across a crash, on each engine: the order service is killed (SIGKILL) and started again while a
consumer follows the feed; no event is lost or repeated, and a cursor taken before the crash still resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.event_consumer import Consumer, assert_exactly_once_in_order
from tests.markers import ENGINES
from tests.stack_client import Api
from tests.topology import ADMIN_TOKEN, stack


@pytest.mark.parametrize("kind", ENGINES)
def test_a_killed_order_service_loses_no_event_and_the_cursor_resumes(tmp_path: Path, kind: str) -> None:
    with stack(tmp_path, kind) as s:
        api = Api.of(s)
        engine = s.order_db.engine()
        product = api.new_product(100)
        with Consumer(api.order_url) as consumer:
            before = [api.place(product, 1).json()["order_id"] for _ in range(4)]
            api.cancel(before[0])
            consumer.caught_up_with(engine)
            seen_before = len(consumer.events)
            cursor = consumer.cursor_after(seen_before)

            s.order.kill()  # the whole process tree, as a pod dies: no worker left holding the port
            s.order.start()

            after = [api.place(product, 1).json()["order_id"] for _ in range(3)]
            api.cancel(before[1])
            api.fulfil(after[0])
            consumer.caught_up_with(engine)
        assert_exactly_once_in_order(consumer.events, engine)
        # A reader that stored its cursor before the crash reads on from it: the same events as the tail.
        r = requests.get(
            f"{api.order_url}/events",
            params={"after": cursor},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["events"] == consumer.events[seen_before:]
        engine.dispose()
