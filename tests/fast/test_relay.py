"""The event relay in-process, against a real nats-server (started once for the module, each test on a
stream of its own): it publishes the outbox in order with the event id as the message id and marks it;
only the lease's holder publishes; a relay that lost its lease marks nothing; a broker that is down
is retried with backoff and nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from local.broker import NatsServer
from local.processes import wait_until
from order_service.broker import BrokerConfig
from order_service.relay import Lease, Relay, unpublished
from service_common.failpoints import FailPoints
from tests.broker_client import own_stream, stream_messages
from tests.inprocess import Services, Templates, services
from tests.markers import requires_program

pytestmark = requires_program("nats-server")


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture
def stream(nats_server: NatsServer) -> BrokerConfig:
    return own_stream(nats_server.url)


@pytest.fixture
def relayed(templates: Templates, tmp_path: Path, stream: BrokerConfig) -> Iterator[Services]:
    """Both apps with the relay's settings pointing at this test's stream."""
    env = {"events_broker_url": stream.url, "events_stream": stream.stream, "events_subject": stream.subject}
    with services(templates, tmp_path, order_env=env) as s:
        yield s


def _relay(apps: Services, holder: str) -> Relay:
    return Relay(apps.order_engine, apps.saga.settings, FailPoints(""), holder=holder)


def _drain(relay: Relay) -> None:
    """Rounds until nothing is left unpublished."""
    for _ in range(20):
        asyncio.run(relay.step())
        if not unpublished(relay._engine, 1):
            return
    raise AssertionError("the relay left events unpublished")


def _some_changes(apps: Services) -> list[str]:
    product = apps.new_product(20)
    ids = [apps.place(product, 1).json["order_id"] for _ in range(4)]
    assert apps.cancel(ids[0]).status_code == 200
    assert apps.fulfil(ids[1]).status_code == 200
    return ids


def _events_by_position(apps: Services) -> list[tuple[str, int]]:
    with apps.order_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT order_id, sequence FROM order_events ORDER BY position")).all()
    return [(f"ORD{r.order_id:08d}", r.sequence) for r in rows]


def test_the_relay_publishes_the_outbox_in_order_with_the_event_id_and_marks_it(
    relayed: Services, stream: BrokerConfig
) -> None:
    ids = _some_changes(relayed)
    relay = _relay(relayed, "relay-a")
    _drain(relay)

    messages = stream_messages(stream)
    expected = [f"{o}:{s}" for o, s in _events_by_position(relayed)]
    assert [m.msg_id for m in messages] == expected
    assert [m.event["id"] for m in messages] == expected
    first = messages[0].event
    assert first["type"] == "order.confirmed" and first["source"] == "/orders" and first["sequence"] == 1
    assert messages[0].subject == f"{stream.subject}.{first['order_id']}"
    assert {m.event["order_id"] for m in messages} == set(ids)
    # data: the order as the API showed it after the change
    last = {m.event["order_id"]: m.event for m in messages}
    assert last[ids[0]]["type"] == "order.cancelled"
    assert last[ids[0]]["data"] == relayed.order_json(ids[0])

    # marked: another round publishes nothing more
    asyncio.run(relay.step())
    assert len(stream_messages(stream)) == len(expected)


def test_only_the_lease_holder_publishes(relayed: Services, stream: BrokerConfig) -> None:
    _some_changes(relayed)
    active, standby = _relay(relayed, "relay-a"), _relay(relayed, "relay-b")
    assert active.lease.hold()
    asyncio.run(standby.step())
    assert stream_messages(stream) == []
    assert not standby.lease.hold()
    _drain(active)
    assert len(stream_messages(stream)) == len(_events_by_position(relayed))


def test_a_relay_whose_lease_expired_and_was_taken_marks_nothing(relayed: Services) -> None:
    _some_changes(relayed)
    engine = relayed.order_engine
    # A short term, to see it run out: relay A takes it, pauses past its end, and B takes it over.
    a = Lease(engine, "relay-a", term=0.6, stop_before_end=0.2)
    b = Lease(engine, "relay-b", term=0.6, stop_before_end=0.2)
    assert a.hold() and not b.hold()
    time.sleep(0.45)
    assert not a.held()  # A stops publishing before its term ends
    time.sleep(0.25)
    assert b.hold()
    positions = [e.position for e in unpublished(engine, 10)]
    assert not a.mark_published(positions)  # fenced: B's token now
    assert len(unpublished(engine, 10)) == len(positions)
    assert not a.hold()
    assert b.mark_published(positions)
    assert unpublished(engine, 10) == []


def test_while_the_broker_is_down_the_relay_backs_off_and_loses_nothing(
    relayed: Services, tmp_path: Path, stream: BrokerConfig
) -> None:
    down = NatsServer(tmp_path / "down")  # not started yet: its port refuses
    (tmp_path / "down").mkdir()
    settings = relayed.saga.settings.model_copy(update={"events_broker_url": down.url})
    relay = Relay(relayed.order_engine, settings, FailPoints(""), holder="relay-a")
    _some_changes(relayed)
    pauses = [asyncio.run(relay.step()) for _ in range(3)]
    assert pauses[0] < pauses[1] < pauses[2]  # doubling backoff
    assert len(unpublished(relayed.order_engine, 100)) == len(_events_by_position(relayed))

    down.start()
    try:
        _drain(relay)
        on_down = BrokerConfig(down.url, stream.stream, stream.subject, stream.publish_timeout)
        assert [m.msg_id for m in stream_messages(on_down)] == [f"{o}:{s}" for o, s in _events_by_position(relayed)]
    finally:
        down.stop()


def test_the_relay_thread_stops_with_the_worker(relayed: Services, stream: BrokerConfig) -> None:
    _some_changes(relayed)
    stop = threading.Event()
    thread = _relay(relayed, "relay-a").start(stop)
    wait_until(lambda: not unpublished(relayed.order_engine, 1), 20, "the relay to publish", interval=0.05)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(stream_messages(stream)) == len(_events_by_position(relayed))


def test_events_tail_follows_the_broker_from_the_start(relayed: Services, stream: BrokerConfig) -> None:
    _some_changes(relayed)
    _drain(_relay(relayed, "relay-a"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EVENTS_"))},
        "EVENTS_BROKER_URL": stream.url,
        "EVENTS_STREAM": stream.stream,
        "EVENTS_SUBJECT": stream.subject,
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "order_service", "events", "tail", "--from-start", "--idle-exit", "1"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["id"] for e in lines] == [f"{o}:{s}" for o, s in _events_by_position(relayed)]
