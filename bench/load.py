"""Load and meters: wrk with the Lua scripts in bench/lua, pgbench with the scripts in bench/pgbench, and
CPU seconds read from /proc (server processes and their children, PostgreSQL backends, the load generator
itself, and the whole machine, so that what other users of a shared machine took can be reported)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua"
PGBENCH = HERE / "pgbench"
TICK = os.sysconf("SC_CLK_TCK")
NPROC = os.cpu_count() or 1
# wrk's own limit on one request; a slower answer would be a socket timeout and missing from latencies.
WRK_TIMEOUT = "10s"


@dataclass
class LoadResult:
    """One closed-loop run: what completed, how fast, and what the load generator used."""

    requests: int
    successes: int
    duration_s: float
    rps: float  # successes per second
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    client_cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "successes": self.successes,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "mean_ms": round(self.mean_ms, 3),
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "errors": self.errors,
        }


# --- CPU from /proc ------------------------------------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far: utime + stime) for every process we can read."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        rest = data[data.rfind(b")") + 2 :].split()
        table[int(entry)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK)
    return table


def tree_cpu(roots: Iterable[int], table: dict[int, tuple[int, float]]) -> dict[int, float]:
    """CPU seconds of each process in the trees under `roots` (a server's master and its workers)."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    out: dict[int, float] = {}
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in table and pid not in out:
            out[pid] = table[pid][1]
            stack.extend(children[pid])
    return out


def wait_quiet(
    groups: dict[str, list[int]], *, window: float = 0.25, below: float = 0.05, timeout: float = 30.0
) -> float:
    """Wait until the process trees under `groups` use less than `below` of one core over two windows in a
    row; the seconds waited (`timeout` at most).

    A load generator that stops abandons its requests in flight: the servers still serve them (at 256
    clients, half a second of orders). A run started at once would queue behind them: its first requests
    would see that backlog as latency (its p99), and its CPU figure would hold the backlog's work without
    its requests. Each measured run starts once the previous load has drained."""
    t0 = time.monotonic()
    roots = [pid for pids in groups.values() for pid in pids]
    quiet = 0
    before = sum(tree_cpu(roots, proc_table()).values())
    while quiet < 2 and time.monotonic() - t0 < timeout:
        time.sleep(window)
        now = sum(tree_cpu(roots, proc_table()).values())
        quiet = quiet + 1 if now - before < below * window else 0
        before = now
    return time.monotonic() - t0


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all but idle and iowait), all cores together."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


class PgBackends:
    """CPU of the PostgreSQL backends serving the given databases, polled while a run lasts (pgbench's
    connections come and go with the run; the services' pools stay)."""

    def __init__(self, admin_conninfo: str, databases: list[str], interval: float = 0.25) -> None:
        self._conninfo = admin_conninfo
        self._databases = databases
        self._interval = interval
        self._baseline: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def _sample(self) -> None:
        rows = self._conn.execute(
            "SELECT pid, extract(epoch FROM backend_start) FROM pg_stat_activity WHERE datname = ANY(%s)",
            (self._databases,),
        ).fetchall()
        table = proc_table()
        for pid, backend_start in rows:
            if pid not in table:
                continue
            cpu = table[pid][1]
            if pid not in self._baseline:
                # A backend that started during the run counts from zero.
                self._baseline[pid] = 0.0 if float(backend_start) >= self._started else cpu
            self._last[pid] = cpu

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> None:
        import psycopg

        self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
        self._started = time.time()
        self._sample()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            self._sample()
        finally:
            self._conn.close()
        return sum(self._last[p] - self._baseline[p] for p in self._last)


@dataclass
class Meter:
    """CPU seconds between start() and stop(): of named process trees, of PostgreSQL backends, and of the
    whole machine (what neither we nor the load generator used is reported as other users' load)."""

    groups: dict[str, list[int]]
    postgres: PgBackends | None = None
    _start: dict[str, dict[int, float]] = field(default_factory=dict)
    _busy0: float = 0.0
    _t0: float = 0.0

    def start(self) -> None:
        if self.postgres:
            self.postgres.start()
        table = proc_table()
        self._start = {name: tree_cpu(roots, table) for name, roots in self.groups.items()}
        self._busy0 = machine_busy()
        self._t0 = time.monotonic()

    def stop(self, client_name: str, client_cpu: float) -> tuple[dict[str, float], float]:
        """CPU seconds by group (the load generator as `client_name`) and other users' CPU, % of all cores."""
        elapsed = time.monotonic() - self._t0
        busy = machine_busy() - self._busy0
        table = proc_table()
        cpu: dict[str, float] = {}
        for name, roots in self.groups.items():
            now = tree_cpu(roots, table)
            before = self._start.get(name, {})
            cpu[name] = sum(max(0.0, v - before.get(pid, 0.0)) for pid, v in now.items())
        if self.postgres:
            cpu["postgres"] = self.postgres.stop()
        cpu[client_name] = client_cpu
        other = max(0.0, busy - sum(cpu.values()))
        return cpu, 100.0 * other / (elapsed * NPROC) if elapsed > 0 else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- wrk -----------------------------------------------------------------------------------------------------


def wrk_script(workdir: Path, scenario: str) -> Path:
    """bench/lua/common.lua followed by the scenario's script, as one file for wrk -s."""
    path = workdir / f"{scenario}.lua"
    path.write_text((LUA / "common.lua").read_text() + "\n" + (LUA / f"{scenario}.lua").read_text())
    return path


def run_wrk(url: str, script: Path, args: list[str], clients: int, duration: int) -> LoadResult:
    """wrk, one thread, `clients` keep-alive connections each with one request in flight (closed loop)."""
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{duration}s", "--timeout", WRK_TIMEOUT, "-s", str(script), url]
    cmd += ["--", *args]
    cpu0 = _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    client_cpu = _children_cpu() - cpu0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    non2xx = {str(k): int(v) for k, v in sorted(data["non2xx"].items())}
    errors = dict(non2xx)
    errors.update({f"socket_{k}": int(v) for k, v in data["socket"].items() if v})
    duration_s = data["duration_us"] / 1e6
    successes = data["requests"] - sum(non2xx.values())
    lat = data["latency_us"]
    return LoadResult(
        requests=data["requests"],
        successes=successes,
        duration_s=duration_s,
        rps=successes / duration_s if duration_s else 0.0,
        mean_ms=lat["mean"] / 1000,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        errors=errors,
        client_cpu_s=client_cpu,
    )


# --- pgbench -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: int
    user: str
    password: str | None
    database: str

    def conninfo(self, database: str | None = None) -> str:
        parts = [f"host={self.host}", f"port={self.port}", f"user={self.user}", f"dbname={database or self.database}"]
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run_pgbench(
    target: PgTarget, script: str, clients: int, duration: int, workdir: Path, defines: dict[str, str]
) -> LoadResult:
    """pgbench -M prepared -c N -j N -T secs with a custom script; latencies from its per-transaction log."""
    log_dir = workdir / f"pgbench-{script}-{clients}-{time.monotonic_ns()}"
    log_dir.mkdir(parents=True)
    cmd = ["pgbench", "-n", "-M", "prepared", "-f", str(PGBENCH / f"{script}.sql")]
    cmd += ["-c", str(clients), "-j", str(clients), "-T", str(duration)]
    cmd += ["-l", "--log-prefix", str(log_dir / "tx"), "-h", target.host, "-p", str(target.port), "-U", target.user]
    for name, value in defines.items():
        cmd += ["-D", f"{name}={value}"]
    cmd.append(target.database)
    env = dict(os.environ)
    if target.password:
        env["PGPASSWORD"] = target.password
    cpu0 = _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, env=env, check=False)
    client_cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    out = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    latencies: list[float] = []
    failed = 0
    for path in log_dir.iterdir():
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1000)
            else:
                failed += 1
    latencies.sort()
    processed = int(out.get("number of transactions actually processed", "0").split()[0])
    tps = float(out.get("tps", "0").split()[0])
    mean = float(out["latency average"].split()[0]) if "latency average" in out else statistics.fmean(latencies or [0])
    errors = {"failed": failed} if failed else {}
    return LoadResult(
        requests=processed + failed,
        successes=processed,
        duration_s=float(duration),
        rps=tps,
        mean_ms=mean,
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        errors=errors,
        client_cpu_s=client_cpu,
    )
