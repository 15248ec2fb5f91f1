"""The production server: gunicorn (gthread workers), with a Kubernetes-style drain on SIGTERM.

On SIGTERM the master first marks the replica as draining (readiness answers 503 so the load balancer
takes it out), keeps serving for `drain_seconds`, then stops accepting and lets workers finish in-flight
requests within `graceful_timeout`. SIGINT (Ctrl-C) stops at once, for local runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.http import wsgi as gunicorn_wsgi

_default_headers = gunicorn_wsgi.Response.default_headers


def _headers_without_banner(self: Any) -> list[str]:
    # gunicorn always sends `Server: gunicorn`; a version banner tells an attacker what to try.
    return [h for h in _default_headers(self) if not h.startswith("Server:")]


gunicorn_wsgi.Response.default_headers = _headers_without_banner  # type: ignore[method-assign]


class _DrainingArbiter(Arbiter):
    drain_flag: Path
    drain_seconds: float

    def handle_term(self) -> None:
        self.drain_flag.touch()
        self.log.info("SIGTERM: draining for %.1fs before stopping", self.drain_seconds)
        deadline = time.monotonic() + self.drain_seconds
        while time.monotonic() < deadline:
            # Keep supervising workers while the endpoint is being removed.
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            self.reap_workers()
            self.murder_workers()
            self.manage_workers()
        raise StopIteration


class _Server(BaseApplication):
    def __init__(self, app_factory: Callable[[], Any], options: dict[str, Any], drain_flag: Path, drain: float):
        self._factory = app_factory
        self._options = options
        self._drain_flag = drain_flag
        self._drain = drain
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()

    def run(self) -> None:
        arbiter = _DrainingArbiter(self)
        arbiter.drain_flag = self._drain_flag
        arbiter.drain_seconds = self._drain
        arbiter.run()


def serve(
    app_factory: Callable[[], Any],
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    drain_flag: Path,
    drain_seconds: float,
    graceful_timeout: float,
    on_child_exit: Callable[[Any, Any], None] | None = None,
) -> None:
    drain_flag.parent.mkdir(parents=True, exist_ok=True)
    drain_flag.unlink(missing_ok=True)
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 75,  # longer than the load balancer's idle timeout, so it closes first
        "graceful_timeout": max(1, round(graceful_timeout)),
        "timeout": 30,
        "accesslog": None,  # the app logs one JSON line per request
        "errorlog": "-",
        "worker_tmp_dir": str(drain_flag.parent),
        "control_socket_disable": True,
    }
    if on_child_exit is not None:
        options["child_exit"] = on_child_exit
    _Server(app_factory, options, drain_flag, drain_seconds).run()
