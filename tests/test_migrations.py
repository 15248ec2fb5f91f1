"""Schema migrations: from an empty database to head, re-run harmlessly, and three runs at once."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from inventory_service import MIGRATIONS as INVENTORY_MIGRATIONS
from order_service import MIGRATIONS as ORDER_MIGRATIONS
from service_common.storage import current_revision, head_revision
from tests.markers import ENGINES
from tests.topology import Database, base_env

SERVICES = [("inventory_service", INVENTORY_MIGRATIONS), ("order_service", ORDER_MIGRATIONS)]


def _migrate(module: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "migrate"], env=base_env(DATABASE_URL=url), capture_output=True, text=True
    )


def _revision(db: Database) -> str | None:
    engine = db.engine()
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize(("module", "migrations"), SERVICES, ids=["inventory", "order"])
def test_migrate_from_empty_then_again_is_harmless(tmp_path: Path, kind: str, module: str, migrations: Path) -> None:
    db = Database(kind, tmp_path, module)
    try:
        assert _revision(db) is None
        first = _migrate(module, db.url)
        assert first.returncode == 0, first.stderr
        assert _revision(db) == head_revision(migrations)
        second = _migrate(module, db.url)
        assert second.returncode == 0, second.stderr
        assert _revision(db) == head_revision(migrations)
        if module == "inventory_service":
            engine = db.engine()
            with engine.connect() as conn:
                count = conn.execute(sa.text("SELECT count(*) FROM products")).scalar_one()
            engine.dispose()
            assert count == 4  # the seed catalogue, once
    finally:
        db.drop()


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize(("module", "migrations"), SERVICES, ids=["inventory", "order"])
def test_three_concurrent_migrations_all_succeed_once(tmp_path: Path, kind: str, module: str, migrations: Path) -> None:
    db = Database(kind, tmp_path, module)
    try:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda _: _migrate(module, db.url), range(3)))
        assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-2000:] for r in results]
        assert _revision(db) == head_revision(migrations)
    finally:
        db.drop()


@pytest.mark.parametrize("kind", ENGINES)
def test_readiness_follows_the_schema_revision(tmp_path: Path, kind: str) -> None:
    """Not ready before migrate; ready at head; still ready when a newer release migrated ahead of it."""
    from service_common.storage import schema_checks

    db = Database(kind, tmp_path, "inventory_service")
    engine = db.engine()
    try:
        checks = schema_checks(engine, INVENTORY_MIGRATIONS)
        assert checks()["schema"] != "ok"
        assert _migrate("inventory_service", db.url).returncode == 0
        assert checks() == {"database": "ok", "schema": "ok"}
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        assert checks()["schema"] == f"at 0001, expected {head_revision(INVENTORY_MIGRATIONS)}"
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'a_newer_release'"))
        assert checks()["schema"] == "ok"
    finally:
        engine.dispose()
        db.drop()
