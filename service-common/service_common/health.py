"""Probes that mean something: live = the process answers; ready = database up, schema at head, not draining."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response

from service_common.jsonio import json_response


def draining(flag: Path) -> bool:
    return flag.exists()


def health_blueprint(ready_checks: Callable[[], dict[str, str]], drain_flag: Path) -> Blueprint:
    """`ready_checks` returns {check: "ok" | problem}; any problem makes the replica not ready."""
    bp = Blueprint("health", __name__)

    @bp.get("/health")
    @bp.get("/health/live")
    def live() -> Response:
        return json_response({"status": "ok"})

    @bp.get("/health/ready")
    def ready() -> Response:
        if draining(drain_flag):
            return json_response({"status": "draining", "checks": {"shutdown": "draining"}}, 503)
        checks = ready_checks()
        ok = all(v == "ok" for v in checks.values())
        return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    return bp
