"""`python -m order_service events tail [--from-start] [--after CURSOR] [--cursor-file PATH] [--url URL]`:
a consumer of the event feed (GET /events, long polls), printing one JSON line per event, as a consumer
would read it. Without --from-start or a cursor it starts at the end: only new events are printed.
With EVENTS_BROKER_URL set it follows the broker's stream instead (order_service.broker), unless --feed,
--after or --cursor-file ask for the feed.

The token is EVENTS_TOKEN (or ADMIN_TOKEN). With --cursor-file, the `next` of each page is written there
once its events are printed, and read back at the start: a tail that is stopped and started again resumes
where it stopped (an event may be printed twice around a crash, never skipped; dedupe by `id`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import urllib3

from order_service.settings import Settings

log = logging.getLogger(__name__)

WAIT_SECONDS = 10
PAGE = 500


class FeedGone(Exception):
    """The cursor is behind retention (410): events were pruned before this consumer read them."""


@dataclass(frozen=True)
class FeedPage:
    events: list[dict[str, Any]]
    next: str


# Reads the page after a cursor (None: from the start), waiting up to `wait` seconds for one.
ReadPage = Callable[[str | None, float], FeedPage]


def follow(
    read: ReadPage,
    after: str | None,
    emit: Callable[[dict[str, Any]], None],
    *,
    saved: Callable[[str], None] = lambda _cursor: None,
    stop: threading.Event | None = None,
    wait: float = WAIT_SECONDS,
) -> str | None:
    """Follow the feed from `after` until `stop` is set: each event to `emit`, in order, then the page's
    `next` to `saved`. Returns the last cursor. Raises FeedGone."""
    stop = stop or threading.Event()
    while not stop.is_set():
        page = read(after, wait)
        for event in page.events:
            emit(event)
        if page.next != after:
            saved(page.next)
        after = page.next
    return after


def http_reader(url: str, token: str | None, *, pause: Callable[[float], None] = time.sleep) -> ReadPage:
    """A ReadPage over HTTP: retries what a retry can mend (unreachable, 429, 503), raises FeedGone on 410."""
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=WAIT_SECONDS + 10))
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def read(after: str | None, wait: float) -> FeedPage:
        fields: dict[str, str] = {"limit": str(PAGE), "wait": f"{wait:g}"}
        if after is not None:
            fields["after"] = after
        while True:
            try:
                response = pool.request("GET", url.rstrip("/") + "/events", fields=fields, headers=headers)
            except urllib3.exceptions.HTTPError as exc:
                log.warning("feed unreachable", extra={"fields": {"reason": type(exc).__name__}})
                pause(1.0)
                continue
            if response.status == 200:
                body = orjson.loads(response.data)
                return FeedPage(body["events"], body["next"])
            if response.status == 410:
                raise FeedGone(response.data.decode(errors="replace"))
            if response.status in (429, 502, 503, 504):
                pause(float(response.headers.get("Retry-After", "1")))
                continue
            raise RuntimeError(f"GET /events answered {response.status}: {response.data[:500]!r}")

    return read


def _at_end(read: ReadPage) -> str:
    """The cursor after the last event there is now (pages read, not printed)."""
    after: str | None = None
    while True:
        page = read(after, 0)
        if not page.events:
            return page.next if after is None else after
        after = page.next


def tail(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m order_service events tail")
    parser.add_argument("--from-start", action="store_true", help="from the oldest event kept")
    parser.add_argument("--after", help="resume after this cursor (a page's `next`)")
    parser.add_argument("--cursor-file", type=Path, help="keep the cursor here, and resume from it")
    parser.add_argument("--url", default=f"http://127.0.0.1:{settings.port}", help="the order service")
    parser.add_argument("--feed", action="store_true", help="read the feed even when a broker is configured")
    parser.add_argument("--idle-exit", type=float, help="(broker) stop once no event came for this many seconds")
    args = parser.parse_args(argv)
    for handler in logging.getLogger().handlers:  # stdout carries the events: logs go to stderr
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    if settings.events_broker_url and not (args.feed or args.after or args.cursor_file):
        # A broker is configured (P13): follow its stream instead (cursors are the feed's own).
        from order_service.broker import tail_broker

        return tail_broker(settings, from_start=args.from_start, idle_exit=args.idle_exit)
    read = http_reader(args.url, settings.events_token or settings.admin_token)
    after: str | None = args.after
    if after is None and args.cursor_file is not None and args.cursor_file.exists():
        after = args.cursor_file.read_text().strip() or None
    if after is None and not args.from_start:
        after = _at_end(read)

    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
        sys.stdout.flush()

    def saved(cursor: str) -> None:
        if args.cursor_file is not None:
            partial = args.cursor_file.with_suffix(".partial")
            partial.write_text(cursor)
            partial.replace(args.cursor_file)

    try:
        follow(read, after, emit, saved=saved)
    except FeedGone as exc:
        print(f"the cursor is behind retention: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0
    return 0


def events_command(settings: Settings, argv: list[str]) -> int:
    """`events <subcommand>`: only `tail` for now."""
    if not argv or argv[0] != "tail":
        print("usage: python -m order_service events tail [--from-start] [--after CURSOR] ...", file=sys.stderr)
        return 2
    return tail(settings, argv[1:])
