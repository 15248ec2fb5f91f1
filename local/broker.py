"""A NATS JetStream server as a process of our own (`nats-server -js`): the event broker that `make cluster`
starts for its relays, and that the tests start on free ports, stop and start again on the same store."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from local.processes import free_port, is_ready, wait_or_kill, wait_until


@dataclass
class NatsServer:
    """nats-server with JetStream on 127.0.0.1, its messages under `workdir` (kept across stop/start)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> NatsServer:
        program = shutil.which("nats-server") or "/usr/sbin/nats-server"
        store = self.workdir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        argv = [program, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)]
        argv += ["-sd", str(store)]
        with open(self.workdir / "nats.log", "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self.ready, timeout, f"nats-server on {self.port}")
        return self

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"nats-server exited; see {self.workdir / 'nats.log'}")
        return is_ready(f"http://127.0.0.1:{self.monitor_port}", "/healthz")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            wait_or_kill(self.proc, 10)
        self.proc = None
