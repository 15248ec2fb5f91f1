"""The order events' broker: NATS JetStream (docs/decisions.md says why).

One stream (EVENTS_STREAM, file storage) takes every order event on the subject `<EVENTS_SUBJECT>.<order id>`,
e.g. `orders.events.ORD00000042`, so a consumer can follow one order or all of them. Each message's
`Nats-Msg-Id` is the event's id (`<order_id>:<sequence>`): a redelivery carries the same id, JetStream drops
one that arrives within the stream's duplicate window, and a consumer deduplicates by it beyond.

nats-py is asyncio: the relay runs its own event loop in a thread of the worker (order_service.relay), and
`events tail` runs one for the command (follow()).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from order_service.settings import Settings

log = logging.getLogger(__name__)

# JetStream drops a message whose id it has stored within this window (a relay's redelivery after a
# crash comes back well within it); consumers deduplicate by id beyond it.
DUPLICATE_WINDOW_SECONDS = 600.0
# How long the stream keeps events: consumers that were away for longer read the feed (GET /events).
STREAM_MAX_AGE_SECONDS = 7 * 24 * 3600.0


class BrokerUnavailable(Exception):
    """The broker could not be reached, or did not acknowledge in time; `reason` says which."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class BrokerConfig:
    url: str
    stream: str
    subject: str
    publish_timeout: float

    @classmethod
    def of(cls, settings: Settings) -> BrokerConfig:
        return cls(
            settings.events_broker_url,
            settings.events_stream,
            settings.events_subject,
            settings.events_publish_timeout,
        )

    def subject_of(self, order_id: str) -> str:
        return f"{self.subject}.{order_id}"


async def _quiet(exc: Exception) -> None:
    # nats-py prints every reconnect error by default; the relay reports failures itself.
    log.debug("broker connection", extra={"fields": {"error": repr(exc)}})


async def connect(config: BrokerConfig, *, reconnect: bool = False) -> Client:
    """A connection; BrokerUnavailable if it cannot be made now. Without `reconnect` a lost connection
    closes and the relay makes a new one, with its own backoff; with it, nats-py reconnects by itself."""
    try:
        return await asyncio.wait_for(
            nats.connect(
                config.url,
                connect_timeout=max(1, int(config.publish_timeout)),
                allow_reconnect=reconnect,
                max_reconnect_attempts=-1 if reconnect else 1,  # 1: the first connect tries once more, then fails
                reconnect_time_wait=0.5,
                error_cb=_quiet,
                name="order-events",
            ),
            timeout=config.publish_timeout + 1,
        )
    except (TimeoutError, NatsError, OSError) as exc:
        raise BrokerUnavailable("connect", repr(exc)) from exc


class Publisher:
    """Publishes events to the stream, creating the stream first if it is missing."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and not self._nc.is_closed

    async def open(self) -> None:
        if self.connected:
            return
        nc = await connect(self.config)
        js = nc.jetstream(timeout=self.config.publish_timeout)
        try:
            await ensure_stream(js, self.config)
        except (TimeoutError, NatsError, OSError) as exc:
            await nc.close()
            raise BrokerUnavailable("stream", repr(exc)) from exc
        self._nc, self._js = nc, js
        log.info("relay connected to the broker", extra={"fields": {"stream": self.config.stream}})

    async def publish(self, event_id: str, order_id: str, body: bytes, event_type: str) -> bool:
        """Publish and wait for the broker's acknowledgement; True when the broker already had this id
        (a duplicate it dropped). BrokerUnavailable when it is not acknowledged in time."""
        if self._js is None:
            raise BrokerUnavailable("connect", "not connected")
        try:
            ack = await self._js.publish(
                self.config.subject_of(order_id),
                body,
                timeout=self.config.publish_timeout,
                stream=self.config.stream,
                headers={"Nats-Msg-Id": event_id, "Ce-Type": event_type},
            )
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise BrokerUnavailable("timeout", repr(exc)) from exc
        except (NatsError, OSError) as exc:
            raise BrokerUnavailable("error", repr(exc)) from exc
        return bool(ack.duplicate)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(NatsError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self._nc.close(), timeout=2)
        self._nc = self._js = None


async def ensure_stream(js: JetStreamContext, config: BrokerConfig) -> None:
    """The stream, created when missing (an existing one is kept as its operator configured it)."""
    try:
        await js.stream_info(config.stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=config.stream,
                subjects=[f"{config.subject}.>"],
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_SECONDS,
                max_age=STREAM_MAX_AGE_SECONDS,
            )
        )


async def follow(config: BrokerConfig, *, from_start: bool, idle_exit: float | None = None) -> AsyncIterator[Any]:
    """The stream's events as they arrive (each a decoded message body), through an ordered consumer:
    from the first event kept with `from_start`, else from now. With `idle_exit`, stops once no event has
    come for that many seconds."""
    import orjson

    nc = await connect(config, reconnect=True)
    try:
        js = nc.jetstream(timeout=config.publish_timeout)
        await ensure_stream(js, config)
        policy = DeliverPolicy.ALL if from_start else DeliverPolicy.NEW
        sub = await js.subscribe(f"{config.subject}.>", ordered_consumer=True, deliver_policy=policy)
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_exit if idle_exit is not None else 3600)
            except nats.errors.TimeoutError:
                if idle_exit is not None:
                    return
                continue
            yield orjson.loads(msg.data)
    finally:
        await nc.close()


def tail_broker(settings: Settings, *, from_start: bool, idle_exit: float | None = None) -> int:
    """`events tail` on the broker (EVENTS_BROKER_URL): one JSON line per event as it arrives, from the
    stream's first event with `from_start`, else from now. Ctrl-C stops it."""
    import sys

    import orjson

    async def run() -> None:
        async for event in follow(BrokerConfig.of(settings), from_start=from_start, idle_exit=idle_exit):
            sys.stdout.write(orjson.dumps(event).decode() + "\n")
            sys.stdout.flush()

    try:
        asyncio.run(run())
    except BrokerUnavailable as exc:
        print(f"the broker is unavailable: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
