"""PostgreSQL restarted under load: both services keep running, answer a clean JSON 503 while the database
is away, recover by themselves when it is back (the first request on a dead connection answers 503 and the pool
drops the connections opened before it; an idle one is pinged before use), and the
recovery worker finishes what the outage left, so the audit ends clean.

The test runs its own throwaway PostgreSQL (initdb + pg_ctl on a free port): the machine's shared server
is never restarted."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.processes import free_port
from tests.saga_helpers import OrderStream, assert_recovered, saga_stack
from tests.stack_client import Api

INITIAL = 100_000


def _program(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or where Debian's packages keep them (newest version)."""
    found = shutil.which(name)
    if found:
        return found
    installed = Path("/usr/lib/postgresql").glob(f"*/bin/{name}")
    newest = max(installed, key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()], default=None)
    return str(newest) if newest else None


INITDB, PG_CTL = _program("initdb"), _program("pg_ctl")
pytestmark = pytest.mark.skipif(
    INITDB is None or PG_CTL is None, reason="a throwaway PostgreSQL needs initdb and pg_ctl (PostgreSQL server)"
)


class ThrowawayPostgres:
    """A PostgreSQL server of the test's own, in a temp dir, on a free port. As root it runs as the
    `postgres` user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        owner = None
        if os.geteuid() == 0:
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres user to run a throwaway PostgreSQL")
        self.dir = Path(tempfile.mkdtemp(prefix="pg-restart-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(args[:2])} failed: {done.stderr or done.stdout}"

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
            "-c fsync=off -c max_connections=100"
        )
        self._run(str(PG_CTL), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "60",
                  *extra, "-o", options, action)  # fmt: skip

    def start(self) -> None:
        self._run(str(INITDB), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        subprocess.run(
            [*self._as, str(PG_CTL), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThrowawayPostgres]:
    pg = ThrowawayPostgres()
    try:
        pg.start()
        # The stack creates both services' databases on the server TEST_DATABASE_URL names.
        monkeypatch.setenv("TEST_DATABASE_URL", pg.url)
        yield pg
    finally:
        pg.stop()


def test_services_ride_out_a_postgresql_restart(tmp_path: Path, postgres: ThrowawayPostgres) -> None:
    with saga_stack(tmp_path, "postgresql") as s:
        api = Api.of(s)
        product = api.new_product(INITIAL)
        with OrderStream(api, product) as stream:
            stream.wait_for_more_orders(10)
            postgres.restart()
            # Neither service was restarted: they serve again on their own.
            stream.wait_for_more_orders(10)

        # No dropped connection and no 500: a success, or a JSON 503 with Retry-After.
        assert stream.errors == []
        assert stream.bad == []
        assert set(stream.answers) <= {
            (201, "confirmed"),
            (503, "database_unavailable"),
            (503, "inventory_unavailable"),
        }, stream.answers
        assert s.order.alive() and s.inventory.alive()
        assert s.worker is not None and s.worker.alive()

        orders = assert_recovered(api, product, INITIAL)
        assert {orders[i]["status"] for i in stream.created} == {"confirmed"}
