"""Fixtures of the fast layer (tests/inprocess.py): both apps in this process on fresh databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inprocess import Services, Templates, services
from tests.markers import ENGINES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session", params=ENGINES)
def templates(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """Migrated once per engine; every test runs on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""
    migrated = Templates.migrated(request.param, tmp_path_factory.mktemp(f"templates-{request.param}"))
    yield migrated
    migrated.drop()


@pytest.fixture
def apps(templates: Templates, tmp_path: Path) -> Iterator[Services]:
    """Both services, fresh databases for each test."""
    with services(templates, tmp_path) as s:
        yield s
