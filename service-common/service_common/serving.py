"""The production server: granian (Rust, HTTP/1.1) in front, the Flask app behind a bounded thread pool.

A slow or idle client holds no Python thread: granian reads the request head in Rust (bounded in time
and size), `BufferedFront` reads the body in the event loop (bounded in time and size), and only a
request that is whole and within every limit is handed to a pool of app threads, which run the WSGI
app. What breaks a limit is answered with our JSON error before any thread is taken. A request the app
asks to run again later (a long poll with nothing to give yet, service_common/front.py) waits in the event
loop between runs, holding no thread either. Spare threads (SPARE_THREADS) run requests only while app
threads wait on a group commit (front.wait_lending), so a batch can gather more asks than there are app
threads without every request contending with more threads for the GIL.

On SIGTERM the master first marks the replica as draining (readiness answers 503 so the load balancer
takes it out), keeps serving for `drain_seconds`, then stops accepting and lets workers finish in-flight
requests within `graceful_timeout`. SIGINT (Ctrl-C) stops at once, for local runs. A worker that dies
is replaced while the others keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.mp import MPServer

from service_common.errors import error_body
from service_common.front import ENVIRON_KEY, RUN_AGAIN_HEADER, FrontRun, serve_turns
from service_common.settings import Limits

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class BufferedFront:
    """ASGI app that checks the head, reads the whole body, then runs the WSGI app in a thread."""

    def __init__(self, wsgi_app: Callable[..., Any], limits: Limits, threads: int, spare_threads: int = 0) -> None:
        self._limits = limits
        self._app = wsgi_app
        self._waiting = 0  # requests between two runs (service_common/front.py); changed in the event loop
        # The app threads take whole requests from a queue and hand each answer back to the event loop:
        # one wake-up of the loop per request (concurrent.futures' pool adds a future and a callback chain).
        self._jobs: queue.SimpleQueue[tuple[dict[str, Any], asyncio.AbstractEventLoop, asyncio.Future[Any]]] = (
            queue.SimpleQueue()
        )
        # Spare threads run a request only on a turn that a waiting app thread lent (front.wait_lending): a
        # group commit gathers up to threads + spare_threads asks, while requests that wait on nothing run on
        # `threads` alone, as many as contend for the GIL (more threads cost every request CPU).
        self._turns: queue.SimpleQueue[None] = queue.SimpleQueue()
        for n in range(threads):
            threading.Thread(target=self._serve_jobs, args=(False,), name=f"app_{n}", daemon=True).start()
        for n in range(spare_threads):
            threading.Thread(target=self._serve_jobs, args=(True,), name=f"spare_{n}", daemon=True).start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websockets; lifespan is not used (granian's ASGINL interface)
            return
        try:
            has_body = self._check_head(scope)
            body = b""
            if has_body:
                # asyncio.timeout, not wait_for: no task is created per request.
                async with asyncio.timeout(self._limits.body_read_timeout):
                    body = await self._read_body(receive)
        except _Refused as refusal:
            await _send_error(send, refusal.status, refusal.code, refusal.message)
            return
        except TimeoutError:
            await _send_error(
                send,
                408,
                "request_timeout",
                f"The request body did not arrive within {self._limits.body_read_timeout:g} s.",
            )
            return

        run = FrontRun(time.monotonic(), False, self._count_waiting)
        status, headers, content = await self._run(scope, body, run)
        pause = _run_again(headers)
        if pause is not None:
            # The app asked to run this request again later (service_common/front.py): it waits here, in the
            # event loop, holding no app thread, until the answer, or until the client hangs up (granian
            # does not cancel a request's coroutine for that: `receive` says so).
            self._waiting += 1
            hung_up = asyncio.ensure_future(_hung_up(receive))
            try:
                run = FrontRun(run.since, True, self._count_waiting)
                while pause is not None:
                    await asyncio.wait((hung_up,), timeout=pause)
                    if hung_up.done():
                        return
                    status, headers, content = await self._run(scope, body, run)
                    pause = _run_again(headers)
            finally:
                hung_up.cancel()
                self._waiting -= 1
        # granian names itself unless the app sends a Server header: send an empty one.
        headers.append((b"server", b""))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    def _count_waiting(self) -> int:
        return self._waiting  # read by app threads: one int, written only by the event loop

    async def _run(self, scope: Scope, body: bytes, run: FrontRun) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One run of the request by an app thread (a fresh environ each time: the body is read anew)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        environ = _environ(scope, body)
        environ[ENVIRON_KEY] = run
        self._jobs.put((environ, loop, answer))
        result: tuple[int, list[tuple[bytes, bytes]], bytes] = await answer
        return result

    def _serve_jobs(self, spare: bool) -> None:
        serve_turns(self._turns)
        while True:
            if spare:
                self._turns.get()
            environ, loop, answer = self._jobs.get()
            try:
                result: Any = self._call_app(environ)
            except BaseException as exc:  # handed to the request's coroutine, which raises it there
                loop.call_soon_threadsafe(_settle, answer, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, answer, result, None)

    def _call_app(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run the WSGI app in a pool thread and collect its whole answer (ours are small JSON documents
        and static files), so the event loop is crossed once per request, not once per chunk."""
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return chunks.append

        result = self._app(environ, start_response)
        try:
            chunks.extend(chunk for chunk in result if chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        return int(status[:3]), encoded, b"".join(chunks)

    def _check_head(self, scope: Scope) -> bool:
        """Refuse a head over the limits; whether a body follows (a Content-Length above 0, or chunked)."""
        limits = self._limits
        query = scope.get("query_string") or b""
        target = len(scope.get("raw_path") or scope["path"].encode()) + (len(query) + 1 if query else 0)
        if len(scope["method"]) + target + len(" HTTP/1.1") + 1 > limits.max_request_line:  # "GET /a?b HTTP/1.1"
            raise _Refused(414, "uri_too_long", f"The request line exceeds {limits.max_request_line} bytes.")
        headers = scope["headers"]
        if len(headers) > limits.max_headers:
            raise _Refused(431, "headers_too_large", f"The request has more than {limits.max_headers} headers.")
        if sum(len(name) + len(value) + 4 for name, value in headers) > limits.max_header_bytes:
            raise _Refused(431, "headers_too_large", f"The request headers exceed {limits.max_header_bytes} bytes.")
        has_body = False
        for name, value in headers:
            if name == b"content-length":
                if value.isdigit() and int(value) > limits.max_body_bytes:
                    raise _Refused(413, "payload_too_large", f"The request body exceeds {limits.max_body_bytes} bytes.")
                has_body = has_body or value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        return has_body

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The client went away, or granian stopped reading a body that is not well framed (a bad
                # chunk size): either way there is no request to run.
                raise _Refused(400, "bad_request", "The request body ended early or is not well framed.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limits.max_body_bytes:
                raise _Refused(
                    413, "payload_too_large", f"The request body exceeds {self._limits.max_body_bytes} bytes."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


_RUN_AGAIN = RUN_AGAIN_HEADER.lower().encode("latin-1")
_MAX_PAUSE = 5.0


def _run_again(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The pause the app asked for before the request runs again (its header removed), or None: an answer."""
    for i, (name, value) in enumerate(headers):
        if name == _RUN_AGAIN:
            del headers[i]
            return min(max(float(value), 0.0), _MAX_PAUSE)
    return None


async def _hung_up(receive: Receive) -> None:
    """Return when the client has gone away (what is left of the body, read already, is passed over)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _settle(answer: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if answer.cancelled():  # the client went away and granian cancelled the request's coroutine
        return
    if exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(result)


def _environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ of a whole request (PEP 3333), built directly from the ASGI scope: what a2wsgi's
    build_environ does, less what this server never varies (no root path, no SCRIPT_NAME from the
    environment), at a third of its cost."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf8").decode("latin1"),
        "QUERY_STRING": scope["query_string"].decode("latin1"),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1] or 0),
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,  # the body is whole: werkzeug may read it to its end
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = _ENVIRON_NAMES.get(raw_name)
        if name is None:
            name = _environ_name(raw_name)
            if len(_ENVIRON_NAMES) < 512:  # bounded: names past the first 512 seen are converted each time
                _ENVIRON_NAMES[raw_name] = name
        value = raw_value.decode("latin1")
        if name in environ:  # a repeated header: joined, as HTTP allows
            value = environ[name] + "," + value
        environ[name] = value
    return environ


def _environ_name(raw_name: bytes) -> str:
    name = raw_name.decode("latin1")
    if name == "content-length":
        return "CONTENT_LENGTH"
    if name == "content-type":
        return "CONTENT_TYPE"
    return "HTTP_" + name.upper().replace("-", "_")


# Header name -> environ key, learnt as headers are seen.
_ENVIRON_NAMES: dict[bytes, str] = {}


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer a refusal as our JSON, then close (a client that has gone away is not told)."""
    body = orjson.dumps(error_body(code, message))
    # The body may be unread: close the connection rather than parse what is left as a next request.
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"connection", b"close"),
        (b"server", b""),
    ]
    with contextlib.suppress(Exception):  # granian raises when the client is gone
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


class _DrainingServer(MPServer):
    """granian's process manager, with the Kubernetes drain before it stops on SIGTERM."""

    drain_flag: Path
    drain_seconds: float
    _draining = False
    _last_respawn: dict[int, float]

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        signum = args[0] if args else None
        if signum == signal.SIGTERM and not self._draining:
            self._draining = True
            self.drain_flag.touch()
            log.info("SIGTERM: draining for %.1fs before stopping", self.drain_seconds)
            # The main loop keeps supervising workers meanwhile; the timer then stops it as granian would.
            timer = threading.Timer(self.drain_seconds, super().signal_handler_interrupt)
            timer.daemon = True
            timer.start()
            return
        super().signal_handler_interrupt(*args, **kwargs)  # type: ignore[no-untyped-call]  # granian: untyped

    def _respawn_workers(self, workers: Any, spawn_target: Any, target_loader: Any, delay: float = 0) -> None:
        # granian stops the whole server when a worker dies twice within 5.5 s of being replaced, so a
        # request that crashes its worker, sent twice, would take the replica down. Keep replacing workers,
        # as gunicorn does; one that died again within 5 s of its start waits a second first, so a worker
        # that cannot start does not spin the CPU (the probes then fail and Kubernetes restarts the pod).
        now = time.monotonic()
        if any(now - self._last_respawn.get(idx, -60.0) < 5 for idx in workers):
            time.sleep(1)
        self._last_respawn.update(dict.fromkeys(workers, now))
        super()._respawn_workers(workers, spawn_target, target_loader, delay)
        self.respawned_wrks.clear()


def serve(
    app_factory: Callable[[], Any],
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    spare_threads: int = 0,
    limits: Limits,
    drain_flag: Path,
    drain_seconds: float,
    graceful_timeout: float,
) -> None:
    """Serve the WSGI app that `app_factory` builds (once in each worker process) until stopped."""
    drain_flag.parent.mkdir(parents=True, exist_ok=True)
    drain_flag.unlink(missing_ok=True)
    server = _DrainingServer(
        "service",  # granian's name for the target; the loader below ignores it
        address=host,
        port=port,
        interface=Interfaces.ASGINL,
        workers=workers,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=round(limits.header_read_timeout * 1000),
            keep_alive=True,
            max_buffer_size=limits.head_buffer(),
        ),
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
        respawn_interval=0.5,
        workers_kill_timeout=max(1, round(graceful_timeout)),
    )
    server.drain_flag = drain_flag
    server._last_respawn = {}
    server.drain_seconds = drain_seconds
    server.serve(target_loader=lambda _target: BufferedFront(app_factory(), limits, threads, spare_threads))
