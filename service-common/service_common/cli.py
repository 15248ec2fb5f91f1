"""The command line each service exposes: `python -m <service> serve | migrate | …`."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service_common.logs import configure_logging
from service_common.settings import ServiceSettings
from service_common.storage import run_migrations

log = logging.getLogger(__name__)


def main(
    service: str,
    settings_class: type[ServiceSettings],
    app_factory: Callable[[Any], Any],
    migrations: Path,
    extra: dict[str, Callable[[Any], int]] | None = None,
    argv: list[str] | None = None,
    with_args: dict[str, Callable[[Any, list[str]], int]] | None = None,
) -> int:
    """Run the command named first; `with_args` commands also take the arguments that follow it."""
    commands: dict[str, Callable[[Any], int]] = {
        "serve": lambda s: _serve(service, s, app_factory),
        "migrate": lambda s: _migrate(migrations, s),
        **(extra or {}),
    }
    parser = argparse.ArgumentParser(prog=f"python -m {service.replace('-', '_')}")
    parser.add_argument("command", choices=sorted([*commands, *(with_args or {})]))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command not in (with_args or {}) and args.arguments:
        parser.error(f"{args.command} takes no arguments")
    settings = settings_class()
    configure_logging(settings.log_level)
    if args.command in (with_args or {}):
        return (with_args or {})[args.command](settings, args.arguments)
    return commands[args.command](settings)


def _migrate(migrations: Path, settings: ServiceSettings) -> int:
    revision = run_migrations(migrations, settings.database_url)
    log.info("schema at head", extra={"fields": {"revision": revision}})
    return 0


def _serve(service: str, settings: ServiceSettings, app_factory: Callable[[Any], Any]) -> int:
    from service_common.metrics import prepare_multiprocess_dir
    from service_common.serving import serve

    # Before anything imports prometheus_client, in the master, so every worker inherits it.
    prepare_multiprocess_dir(settings.scratch_path(service) / "metrics")
    serve(
        lambda: app_factory(settings),
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        threads=settings.threads,
        spare_threads=settings.spare_threads,
        limits=settings.limits(),
        drain_flag=settings.drain_flag(service),
        drain_seconds=settings.drain_seconds,
        graceful_timeout=settings.graceful_timeout,
    )
    return 0
