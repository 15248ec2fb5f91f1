"""Fixtures of the fast layer (tests/inprocess.py): both apps in this process on temp SQLite files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inprocess import Services, migrated_templates, services


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return migrated_templates(tmp_path_factory.mktemp("templates"))


@pytest.fixture
def apps(templates: tuple[Path, Path], tmp_path: Path) -> Iterator[Services]:
    """Both services, fresh databases for each test."""
    with services(templates, tmp_path) as s:
        yield s
