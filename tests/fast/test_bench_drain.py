"""The benchmark starts a measured run only once the servers have drained the load before it
(bench.load.wait_quiet): requests a stopped load generator left in flight are still being served, and a run
started at once would count their wait as its latency and their CPU as its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.load import wait_quiet

# Busy for a while (the backlog being served), then marks the end of its work and idles.
BUSY_THEN_IDLE = """
import sys, time
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
open(sys.argv[1], "w").close()
time.sleep(60)
"""


def test_waits_for_a_busy_process_tree_to_go_quiet(tmp_path: Path) -> None:
    done = tmp_path / "done"
    proc = subprocess.Popen([sys.executable, "-c", BUSY_THEN_IDLE, str(done)])
    try:
        waited = wait_quiet({"server": [proc.pid]}, timeout=60)
        assert done.exists()  # it returned only after the busy phase had ended
        assert waited < 60  # and because the tree went quiet, not because it gave up
    finally:
        proc.kill()
        proc.wait()


def test_an_idle_process_is_quiet_at_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert wait_quiet({"server": [proc.pid]}, timeout=60) < 60
    finally:
        proc.kill()
        proc.wait()
