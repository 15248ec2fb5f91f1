"""Fixtures shared by the process tests: real services as real processes, on SQLite and (when
TEST_DATABASE_URL is set) PostgreSQL. Helpers live in modules (tests/stack_client.py, tests/markers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.markers import ENGINES
from tests.stack_client import Api
from tests.topology import Stack, stack


@pytest.fixture(scope="module", params=ENGINES)
def services(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Both services (and the recovery worker), shared by the tests of one module on one engine."""
    workdir = tmp_path_factory.mktemp(f"stack-{request.param}")
    with stack(Path(workdir), request.param, with_worker=True) as s:
        yield s


@pytest.fixture
def api(services: Stack) -> Api:
    return Api.of(services)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (FORBID_SKIPS=1) every program and database is installed, so a skipped test is a failure."""
    if not os.environ.get("FORBID_SKIPS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        if reporter:
            reporter.write_line(f"FORBID_SKIPS: {skipped} test(s) skipped; in CI nothing may skip", red=True)
        session.exitstatus = 1
