"""Reading the event broker from the tests: every message of a stream (body and Nats-Msg-Id), and a
stream config of a test's own (unique stream and subject names on a broker the test started)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import nats
import orjson
from nats.js.api import DeliverPolicy

from order_service.broker import BrokerConfig


@dataclass(frozen=True)
class Message:
    msg_id: str
    subject: str
    event: dict[str, Any]


def own_stream(url: str) -> BrokerConfig:
    """A stream and subject no other test uses (the names the relay's settings take)."""
    tag = uuid.uuid4().hex[:10]
    return BrokerConfig(url=url, stream=f"T_{tag}", subject=f"t{tag}.events", publish_timeout=2.0)


def stream_env(config: BrokerConfig) -> dict[str, str]:
    """The environment that points a worker's relay at this stream."""
    return {"EVENTS_BROKER_URL": config.url, "EVENTS_STREAM": config.stream, "EVENTS_SUBJECT": config.subject}


def stream_messages(config: BrokerConfig) -> list[Message]:
    """Every message the stream holds, in stream order ([] when it does not exist yet)."""
    return asyncio.run(_read(config))


async def _read(config: BrokerConfig) -> list[Message]:
    nc = await nats.connect(config.url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=5)
        try:
            info = await js.stream_info(config.stream)
        except nats.js.errors.NotFoundError:
            return []
        count = info.state.messages
        if not count:
            return []
        sub = await js.subscribe(
            f"{config.subject}.>", stream=config.stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        out = []
        for _ in range(count):
            msg = await sub.next_msg(timeout=10)
            out.append(Message((msg.headers or {}).get("Nats-Msg-Id", ""), msg.subject, orjson.loads(msg.data)))
        return out
    finally:
        await nc.close()
