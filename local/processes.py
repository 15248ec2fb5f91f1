"""Starting and stopping service processes: the one way `make run`, `make cluster`, the tests and the bench
do it. A service process is `python -m <service> <command>` with an environment (its settings); this
module knows nothing of the server inside it, only its health endpoint. Also: `migrate`, PostgreSQL
databases created and dropped by name, waiting for a condition, and a process tree with its CPU time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL, SIGSTOP, SIGTERM

import sqlalchemy as sa

from service_common.storage import normalise_url

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    what: str = "condition",
    *,
    interval: float = 0.1,
    ignoring: tuple[type[BaseException], ...] = (),
) -> None:
    """Return once `predicate()` is true; TimeoutError after `timeout` seconds. Exceptions of the types in
    `ignoring` count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ignoring:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def is_ready(url: str, path: str = "/health/ready") -> bool:
    """GET {url}{path} answers 200."""
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=1) as response:  # noqa: S310 (our loopback URL)
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def service_command(module: str, command: str | None) -> list[str]:
    return [sys.executable, "-m", module, *([command] if command else [])]


def spawn(
    module: str, command: str | None, env: dict[str, str], log: Path | None, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """`python -m <module> <command>` with its output appended to `log` (None: to ours). In a session of
    its own when asked, so that a signal to the group reaches every process it starts."""
    argv = service_command(module, command)
    if log is None:
        return subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=new_session)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session
        )


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Its exit code, after SIGKILL if it has not exited within `timeout`."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def migrate(module: str, env: dict[str, str], timeout: float = 120) -> None:
    """`python -m <module> migrate`; RuntimeError with its output if it fails."""
    done = subprocess.run(
        service_command(module, "migrate"), env=env, cwd=ROOT, capture_output=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
        raise RuntimeError(f"{module} migrate exited with {done.returncode}:\n{output}")


# --- one service process -------------------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """One process of a service (a server or a worker) that can be started, signalled, killed and started
    again with the same environment."""

    module: str
    command: str | None  # None: `python -m <module>` alone
    env: dict[str, str]
    log: Path | None  # None: its output goes to ours
    port: int | None = None
    name: str = ""
    new_session: bool = False
    ready_path: str = "/health/ready"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name or self.module} was never started"
        return self.proc.pid

    def start(self, wait: bool = False, timeout: float = 60) -> ServiceProcess:
        self.proc = spawn(self.module, self.command, self.env, self.log, new_session=self.new_session)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """Until its health endpoint says ready; RuntimeError at once if it exits first."""

        def ready() -> bool:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"{self.module} {self.command} exited with {code}; see {self.log}")
            return is_ready(self.url, self.ready_path)

        wait_until(ready, timeout, f"{self.module} on {self.port} to be ready")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int | None:
        """Its exit code once it exits (SIGKILL after `timeout`); None if never started."""
        return None if self.proc is None else wait_or_kill(self.proc, timeout)

    def stop(self, sig: int = SIGTERM, timeout: float = 30) -> int | None:
        """Send `sig` and wait for the exit (SIGKILL after `timeout`). With a session of its own, whatever
        of the session is left afterwards is killed too."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = wait_or_kill(self.proc, timeout)
        if self.new_session:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, SIGKILL)
        return code

    def kill(self) -> None:
        """SIGKILL the process and every process under it: nothing gets to clean up."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # Freeze it first. A running server replaces each worker it sees die, and a worker forked after
        # the list below was taken would survive the kill, still holding the port.
        with suppress(ProcessLookupError):
            os.kill(self.proc.pid, SIGSTOP)
        for pid in descendants(self.proc.pid):
            _kill(pid)
        _kill(self.proc.pid)
        self.proc.wait()

    def tree(self) -> list[int]:
        """Its pid and every descendant's."""
        return [self.pid, *descendants(self.pid)]


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, SIGKILL)


def listeners(port: int) -> int:
    """Sockets listening on `port` on this machine (a server whose workers each bind with SO_REUSEPORT has
    one per worker)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


# --- process trees -------------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    children = [int(p) for p in out.stdout.split()]
    return children + [d for c in children for d in descendants(c)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (those that have exited count nothing)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


# --- PostgreSQL databases ------------------------------------------------------------------------------------


def server_url(url: str) -> str:
    """The server part of a PostgreSQL URL given with or without a database name."""
    base = url.rstrip("/")
    return base.rsplit("/", 1)[0] if base.count("/") > 2 else base


def _admin(server: str, statement: str, parameters: dict[str, str] | None = None) -> sa.Row[tuple[int]] | None:
    engine = sa.create_engine(normalise_url(f"{server_url(server)}/postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(statement), parameters or {})
            return result.first() if result.returns_rows else None
    finally:
        engine.dispose()


def create_database(server: str, name: str, *, if_missing: bool = False, template: str | None = None) -> str:
    """Create database `name` on the server (left as it is if it exists and `if_missing`; a copy of
    `template` when given); its URL."""
    exists = if_missing and _admin(server, "SELECT 1 FROM pg_database WHERE datname = :n", {"n": name}) is not None
    if not exists:
        _admin(server, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return f"{server_url(server)}/{name}"


def drop_database(server: str, name: str) -> None:
    _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
