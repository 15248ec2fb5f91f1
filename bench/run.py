"""Benchmark the order path and the reads against their ceilings, measured in the same run on the same machine.

Load: wrk (one thread, N keep-alive connections, each with one request in flight: a closed loop) for a fixed
duration, with the Lua scripts in bench/lua. Scenarios: POST /orders on one hot product, POST /orders spread
over 100 products, GET /inventory/{id}, and the order service's mix (80 % GET /orders/{id}, 20 % POST /orders).
Ceilings: (a) a hello-world Flask app on the same server (bench/hello.py), (b) pgbench running the reserve
path's conditional stock update on one hot row and on rows spread over 100, at the same concurrency.
Topologies: one replica of each service on SQLite and on PostgreSQL, and 3+3 replicas behind HAProxy.

Per run, one JSON line in OUT/bench-<stamp>.jsonl; at the end OUT/bench-<stamp>.md (ratios, targets) and
OUT/bench-<stamp>.png (throughput and p99 against concurrency). Only loopback targets.

    python -m bench            # default: ~4 minutes
    python -m bench --quick    # smoke test: under a minute
    python -m bench --full     # 1, 8, 32, 64 clients, longer runs
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` as well as `python -m bench`
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.load import (  # noqa: E402
    NPROC,
    PGBENCH,
    LoadResult,
    Meter,
    PgBackends,
    run_pgbench,
    run_wrk,
    wait_quiet,
    wrk_script,
)
from bench.stacks import (  # noqa: E402
    HOT,
    SPREAD_COUNT,
    SPREAD_PREFIX,
    Cluster3,
    Hello,
    PgServer,
    Seed,
    Single,
    available,
    newest_order,
    reserve_batches,
    seed,
)
from inventory_service.settings import Settings as InventorySettings  # noqa: E402
from order_service.settings import Settings as OrderSettings  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
TOPOLOGIES = ("sqlite", "postgresql", "cluster")
LOGGING_SCENARIOS = ("order_hot", "read")
SEED_SCENARIOS = ("order_hot", "read")  # what the seed can serve
# reserve_hot (inventory's group commit) runs at this concurrency whatever --clients says, against
# pgbench's hot row at the same concurrency in the same run.
RESERVE_CLIENTS = 64


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()

    def _stamp(self, counted: bool) -> str:
        m, s = divmod(int(time.monotonic() - self.t0), 60)
        count = f"{self.done:>2}/{self.total}" if counted else " " * (len(str(self.total)) + 3)
        return f"[{count} {m:02d}:{s:02d}]"

    def note(self, text: str) -> None:
        print(f"{self._stamp(False)} {text}", flush=True)

    def step(self, record: dict[str, Any]) -> None:
        self.done += 1
        where = f"{record['topology']} {record['engine']}"
        if record["kind"] == "logging":
            where += f" {record['log_level']}"
        errors = sum(record["errors"].values())
        print(
            f"{self._stamp(True)} {record['scenario']:<14} {where:<22} c={record['clients']:<3} "
            f"{record['rps']:>8.0f} ok/s  p50 {record['p50_ms']:>7.1f} ms  p99 {record['p99_ms']:>7.1f} ms  "
            f"errors {errors}  (other CPU {record['other_cpu_pct']:.0f} %)",
            flush=True,
        )


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.out / f"bench-{self.stamp}.jsonl"
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        self.pg = PgServer(args.pg_url)
        self.tokens = {"SERVICE_TOKEN": secrets.token_urlsafe(24), "ADMIN_TOKEN": secrets.token_urlsafe(24)}
        self.settings = {
            **self.tokens,
            "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
            "THREADS": os.environ.get("THREADS", "8"),
            "DB_POOL_SIZE": os.environ.get("DB_POOL_SIZE", "5"),
        }
        self.records: list[dict[str, Any]] = []
        self.scripts = {s: wrk_script(self.workdir, s) for s in (*report.SERVICE_SCENARIOS, "hello")}
        levels = [s for s in args.scenarios if s != "reserve_hot"]
        runs = len(args.clients) * (len(report.CEILINGS) + len(levels) * len(args.topologies))
        if "reserve_hot" in args.scenarios:
            runs += len(args.topologies) + (RESERVE_CLIENTS not in args.clients)
        if args.logging_check and "postgresql" in args.topologies:
            runs += 4 * len(set(LOGGING_SCENARIOS) & set(args.scenarios))
        if args.seed:
            runs += len(args.clients) * len(set(SEED_SCENARIOS) & set(args.scenarios))
        self.progress = Progress(runs)
        self.meta = {
            "run": self.stamp,
            "nproc": NPROC,
            "cpu_model": _cpu_model(),
            "workers": int(self.settings["WEB_CONCURRENCY"]),
            "threads": int(self.settings["THREADS"]),
        }

    # --- one measurement -------------------------------------------------------------------------------------

    def measure(
        self,
        kind: str,
        scenario: str,
        where: tuple[str, str, str],
        clients: int,
        groups: dict[str, list[int]],
        databases: list[str],
        client: str,
        load: Callable[[], LoadResult],
        after: Callable[[LoadResult], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One measured run; `after` adds fields to its record, once the load has stopped."""
        topology, engine, log_level = where
        drained = wait_quiet(groups) if groups else 0.0
        pg = PgBackends(self.pg.target.conninfo("postgres"), databases) if databases else None
        meter = Meter(groups, pg)
        meter.start()
        result: LoadResult | None = None
        try:
            result = load()
        finally:
            cpu, other = meter.stop(client, result.client_cpu_s if result else 0.0)
        per_1k = {k: round(1000 * v / result.requests, 4) if result.requests else None for k, v in cpu.items()}
        record = {
            "kind": kind,
            "scenario": scenario,
            "topology": topology,
            "engine": engine,
            "log_level": log_level,
            "clients": clients,
            **result.as_dict(),
            "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_per_1k": per_1k,
            "other_cpu_pct": round(other, 1),
            "drained_s": round(drained, 2),
            **self.meta,
            **(after(result) if after else {}),
        }
        self.records.append(record)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.progress.step(record)
        return record

    def warmup(self, load: Callable[[], LoadResult]) -> None:
        """Discarded load before a scenario's measurements (pools filled, code paths warm)."""
        if self.args.warmup > 0:
            load()

    def wrk(self, url: str, scenario: str, args: list[str], clients: int, duration: int) -> LoadResult:
        return run_wrk(url, self.scripts[scenario], args, clients, duration)

    # --- ceilings --------------------------------------------------------------------------------------------

    def ceilings(self) -> None:
        a = self.args
        hello = Hello(self.workdir, self.settings)
        self.progress.note(f"ceiling (a): hello-world Flask app, {self._server_shape(spare=False)}")
        try:
            hello.start()
            url = hello.server.url + "/"
            self.warmup(lambda: self.wrk(url, "hello", [], max(a.clients), a.warmup))
            for c in a.clients:
                groups = {"hello": [hello.server.pid]}
                self.measure(
                    "ceiling",
                    "hello",
                    ("ceiling", "none", "WARNING"),
                    c,
                    groups,
                    [],
                    "wrk",
                    lambda c=c: self.wrk(url, "hello", [], c, a.duration),
                )
        finally:
            hello.stop()
        database = f"{a.db_prefix}_pgbench"
        self.progress.note(f"ceiling (b): pgbench -M prepared, conditional stock update, database {database}")
        self.pg.recreate(database)
        try:
            self.pg.run_script(database, (PGBENCH / "schema.sql").read_text())
            target = dataclasses.replace(self.pg.target, database=database)
            hot_levels = sorted({*a.clients, RESERVE_CLIENTS}) if "reserve_hot" in a.scenarios else a.clients
            # pgbench opens one connection per client: above the server's max_connections (less a margin for
            # the bench's own and other sessions) the ceiling is measured at that cap and said so.
            cap = self.pg.max_clients()
            if max(a.clients) > cap:
                self.progress.note(f"pgbench clients capped at {cap} (PostgreSQL's free connections)")
            for script, defines in (("hot", {"product": HOT}), ("spread", {})):
                top = min(max(a.clients), cap)
                self.warmup(lambda s=script, d=defines, c=top: run_pgbench(target, s, c, a.warmup, self.workdir, d))
                for c in hot_levels if script == "hot" else a.clients:
                    n = min(c, cap)
                    self.measure(
                        "ceiling",
                        f"pgbench_{script}",
                        ("ceiling", "postgresql", "WARNING"),
                        c,
                        {},
                        [database],
                        "pgbench",
                        lambda n=n, s=script, d=defines: run_pgbench(target, s, n, a.duration, self.workdir, d),
                    )
        finally:
            if not a.keep_databases:
                self.pg.drop(database)

    # --- the services ----------------------------------------------------------------------------------------

    def _server_shape(self, spare: bool = True) -> str:
        shape = f"granian {self.settings['WEB_CONCURRENCY']} workers x {self.settings['THREADS']} app threads"
        if spare:  # each service's own default (docs/decisions.md, "Spare threads")
            shape += (
                f" (+ {OrderSettings.model_fields['spare_threads'].default} spare in order, "
                f"{InventorySettings.model_fields['spare_threads'].default} in inventory)"
            )
        return shape

    @staticmethod
    def target(stack: Any, scenario: str) -> tuple[str, list[str]]:
        """The base URL a scenario loads and the arguments of its Lua script."""
        if scenario == "read":
            prefix, count = stack.read_products
            return stack.inventory_url, [prefix, str(count)]
        products = [SPREAD_PREFIX, str(SPREAD_COUNT)]
        if scenario == "mix":
            return stack.order_url, [*products, str(newest_order(stack.order_url))]
        return stack.order_url, [stack.hot] if scenario == "order_hot" else products

    def scenarios(self, stack: Any, only: tuple[str, ...] | None = None) -> None:
        a = self.args
        for scenario in (s for s in a.scenarios if only is None or s in only):
            if scenario == "reserve_hot":
                self.reserves(stack)
                continue
            url, args = self.target(stack, scenario)
            top = max(a.clients)
            self.warmup(lambda u=url, s=scenario, x=args, c=top: self.wrk(u, s, x, c, a.warmup))
            for c in a.clients:
                self.measure(
                    "service",
                    scenario,
                    (stack.topology, stack.engine, "WARNING"),
                    c,
                    stack.cpu_groups(),
                    stack.databases,
                    "wrk",
                    lambda c=c, u=url, s=scenario, x=args: self.wrk(u, s, x, c, a.duration),
                    self._batches(stack) if scenario.startswith("order") and stack.topology == "single" else None,
                )

    @staticmethod
    def _batches(stack: Any) -> Callable[[LoadResult], dict[str, Any]]:
        """For an order scenario on one replica: how many reserves each call to inventory carried, and how
        many each of inventory's transactions held (both histograms, from now until the run's end)."""
        calls0 = reserve_batches(stack.order_url, "inventory_reserves_per_call")
        transactions0 = reserve_batches(stack.inventory_url)

        def after(_result: LoadResult) -> dict[str, Any]:
            calls = report.batch_delta(calls0, reserve_batches(stack.order_url, "inventory_reserves_per_call"))
            transactions = report.batch_delta(transactions0, reserve_batches(stack.inventory_url))
            return {"reserves_per_call": calls, "reserves_per_transaction": transactions}

        return after

    def reserves(self, stack: Any) -> None:
        """reserve_hot: POST /inventory/reserve on the hot product at RESERVE_CLIENTS, each a new order id.
        Only 201s count; the record also says how far the stock fell (more than the 201s by the reserves wrk
        cut off at the end, answered after it stopped counting) and, on one replica, how many reserves each
        transaction held (inventory's histogram, before and after)."""
        a = self.args
        url = stack.inventory_url
        prefix = f"{stack.topology[0]}{stack.engine[0]}{self.stamp}"
        token = self.tokens["SERVICE_TOKEN"]
        self.warmup(lambda: self.wrk(url, "reserve_hot", [HOT, token, prefix + "w"], RESERVE_CLIENTS, a.warmup))
        single = stack.topology == "single"  # behind HAProxy, /metrics is one replica's
        stock0, batches0 = available(url, HOT, settle=True), reserve_batches(url) if single else None

        def after(result: LoadResult) -> dict[str, Any]:
            drop = stock0 - available(url, HOT, settle=True)
            extra: dict[str, Any] = {"stock_drop": drop, "cut_off": drop - result.successes}
            if batches0 is not None:
                extra["reserves_per_transaction"] = report.batch_delta(batches0, reserve_batches(url))
            return extra

        self.measure(
            "service",
            "reserve_hot",
            (stack.topology, stack.engine, "WARNING"),
            RESERVE_CLIENTS,
            stack.cpu_groups(),
            stack.databases,
            "wrk",
            lambda: self.wrk(url, "reserve_hot", [HOT, token, prefix + "m"], RESERVE_CLIENTS, a.duration),
            after,
        )

    def logging_ab(self, stack: Any) -> None:
        """LOG_LEVEL=INFO against WARNING: a second replica of each service on the same databases, with INFO
        (one JSON line per request on stdout, to a file), and runs alternating WARNING, INFO, INFO, WARNING
        (ABBA), so that a drift in what else the machine does cancels out of the comparison."""
        a = self.args
        twin = stack.twin(self.workdir / "info")
        self.progress.note("logging A/B: a second pair of replicas on the same databases, with LOG_LEVEL=INFO")
        try:
            twin.start("INFO")
            stacks = {"WARNING": stack, "INFO": twin}
            clients = max(a.clients)
            seconds = max(2, a.duration - 2)  # four runs per scenario: shorter, to keep the default run in 5 min
            for scenario in (s for s in LOGGING_SCENARIOS if s in a.scenarios):
                url, args = self.target(twin, scenario)
                self.warmup(lambda u=url, s=scenario, x=args, c=clients: self.wrk(u, s, x, c, a.warmup))
                for level in ("WARNING", "INFO", "INFO", "WARNING"):
                    one = stacks[level]
                    url, args = self.target(one, scenario)
                    self.measure(
                        "logging",
                        scenario,
                        (one.topology, one.engine, level),
                        clients,
                        one.cpu_groups(),
                        one.databases,
                        "wrk",
                        lambda u=url, s=scenario, x=args: self.wrk(u, s, x, clients, seconds),
                    )
        finally:
            twin.stop()

    def seed_demo(self) -> None:
        """The seed (bench/stacks.Seed), under the same wrk load as ours: order_hot and read only (the seed has
        four products, no carts, no batch reserve)."""
        a = self.args
        stack = Seed(a.seed, a.seed_python, self.workdir / "seed")
        try:
            self.progress.note(f"starting the seed from {a.seed} (Flask's own server, dicts in memory)")
            stack.start("INFO")
            self.scenarios(stack, only=SEED_SCENARIOS)
        finally:
            stack.stop()

    def topology(self, name: str) -> None:
        a = self.args
        if name == "cluster":
            stack: Any = Cluster3(self.workdir / "cluster", self.settings, self.pg, a.db_prefix)
            shape = f"3+3 replicas behind HAProxy on PostgreSQL, each {self._server_shape()}"
        else:
            pg = self.pg if name == "postgresql" else None
            stack = Single(name, self.workdir / name, self.settings, pg, a.db_prefix)
            shape = f"1+1 replicas on {name}, each {self._server_shape()}"
        try:
            self.progress.note(f"starting {shape}")
            t0 = time.monotonic()
            stack.start("WARNING")
            t1 = time.monotonic()
            seed(stack.inventory_url, self.tokens["ADMIN_TOKEN"])
            seeded = time.monotonic() - t1
            self.progress.note(f"ready in {t1 - t0:.1f}s; {SPREAD_COUNT + 1} products seeded in {seeded:.1f}s")
            self.scenarios(stack)
            if a.logging_check and name == "postgresql":
                self.logging_ab(stack)
            if a.profile and name != "cluster":
                self.profile(stack)
        finally:
            stack.stop()
            if not a.keep_databases:
                stack.drop()

    # --- profiling -------------------------------------------------------------------------------------------

    def profile(self, stack: Any) -> None:
        """py-spy on both services' workers while POST /orders hammers the hot product: `dump`s of one worker
        (where each thread is, waits included), then `record` of all workers: on-CPU (--gil) and wall (--idle)."""
        a = self.args
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            self.progress.note("--profile: py-spy is not installed (pip install py-spy); skipped")
            return
        seconds = a.profile_seconds
        clients = max(a.clients)
        self.progress.note(f"profiling both services for {seconds + 3}s under order_hot c={clients} (py-spy)")
        load = threading.Thread(
            target=lambda: self.wrk(stack.order_url, "order_hot", [HOT], clients, seconds + 6), daemon=True
        )
        load.start()
        try:
            time.sleep(1.5)
            prefix = self.out / f"profile-{self.stamp}-{stack.engine}"
            masters = stack.masters()
            dumps: dict[str, list[str]] = {}
            for _ in range(3):  # where each thread of one worker is, waits included
                for service, pid in masters.items():
                    worker = _children(pid)[:1] or [pid]
                    cmd = [spy, "dump", "--pid", str(worker[0])]
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
                    dumps.setdefault(service, []).append(out)
                time.sleep(1)
            spies = []
            for service, pid in masters.items():
                for mode, flag in (("cpu", "--gil"), ("wall", "--idle")):
                    raw = Path(f"{prefix}-{service}-{mode}.txt")
                    cmd = [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--format", "raw"]
                    cmd += [flag, "--duration", str(seconds), "--rate", "50", "-o", str(raw)]
                    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    spies.append((service, mode, raw, proc))
            for service, mode, raw, proc in spies:
                try:
                    _, err = proc.communicate(timeout=seconds + 60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                if proc.returncode != 0 or not raw.exists():
                    self.progress.note(f"py-spy record on {service} ({mode}) failed: {err.decode()[-300:]}")
        finally:
            load.join(timeout=seconds + 60)
        summary = Path(f"{prefix}.md")
        title = f"{stack.topology} {stack.engine}, POST /orders hot product, {clients} clients"
        parts = [f"# Profile: {title}", ""]
        for service, outs in dumps.items():
            parts += thread_states(service, outs)
        for service, mode, raw, _ in spies:
            if raw.exists():
                parts += top_frames(
                    raw, f"{service} workers, {mode} ({'on-CPU: --gil' if mode == 'cpu' else 'wall: --idle'})"
                )
        summary.write_text("\n".join(parts) + "\n")
        self.progress.note(f"profile: {summary} (raw collapsed stacks beside it)")

    # --- the whole run ---------------------------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        self.progress.note(
            f"bench {self.stamp}: {','.join(map(str, a.clients))} clients, {a.duration}s per run, "
            f"topologies {','.join(a.topologies)}; results in {self.out}"
        )
        try:
            self.ceilings()
            if a.seed:
                self.seed_demo()
            for name in a.topologies:
                self.topology(name)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        results = report.Results(self.records)
        header = [
            f"# Benchmark {self.stamp}",
            "",
            f"Machine: {NPROC} cores, {self.meta['cpu_model']}; Python {platform.python_version()}; "
            f"{self._server_shape()}; {a.duration}s per run, clients {', '.join(map(str, a.clients))}. "
            "CPU s/1k = CPU seconds per 1,000 completed requests (utime+stime of the server's master and workers; "
            "postgres: the backends serving the run's databases). Other CPU = what other processes on the "
            "machine used during the run, in % of all cores.",
        ]
        markdown = results.markdown(header)
        (self.out / f"bench-{self.stamp}.md").write_text(markdown)
        report.chart(self.records, self.out / f"bench-{self.stamp}.png", f"bench {self.stamp} ({NPROC} cores)")
        print()
        print(markdown)
        print(f"results: {self.jsonl}, {self.jsonl.with_suffix('.md')}, {self.jsonl.with_suffix('.png')}")
        return 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def thread_states(service: str, dumps: list[str]) -> list[str]:
    """Tally of the innermost frame of every thread over a few `py-spy dump`s of one worker."""
    states: Counter[str] = Counter()
    for dump in dumps:
        lines = dump.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Thread ") and i + 1 < len(lines) and lines[i + 1].startswith("    "):
                states[lines[i + 1].strip()] += 1
    total = sum(states.values())
    parts = [f"## {service}: where one worker's threads are ({len(dumps)} x py-spy dump, {total} thread samples)", ""]
    parts += ["| threads | innermost frame |", "|---:|---|"]
    parts += [f"| {n} | `{frame}` |" for frame, n in states.most_common(15)]
    return [*parts, ""]


def top_frames(raw: Path, title: str, top: int = 25) -> list[str]:
    """The hottest functions in py-spy's collapsed stacks: own time (leaf frame, with its line) and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            inclusive[f] += count
    parts = [f"## {title}: {total} samples ({raw.name})", ""]
    for name, counter in (("own time (innermost frame)", own), ("inclusive", inclusive)):
        parts += [f"{name}:", "", "| % | samples | frame |", "|---:|---:|---|"]
        parts += [f"| {100 * n / total:.1f} | {n} | `{f}` |" for f, n in counter.most_common(top)] if total else []
        parts.append("")
    return parts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke test: SQLite and PostgreSQL single, c=32, 2s runs")
    mode.add_argument("--full", action="store_true", help="1, 8, 32, 64 clients, 10s runs")
    parser.add_argument("--duration", type=int, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, help="seconds of discarded load before each scenario")
    parser.add_argument("--clients", help="comma-separated concurrency levels, e.g. 1,32")
    parser.add_argument("--topologies", help=f"comma-separated, of {','.join(TOPOLOGIES)}")
    parser.add_argument("--scenarios", help=f"comma-separated, of {','.join(report.SERVICE_SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results directory")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
        help="PostgreSQL server (loopback only; env BENCH_PG_URL, default %(default)s)",
    )
    parser.add_argument("--db-prefix", default="bench", help="names of the databases the bench creates and drops")
    parser.add_argument("--keep-databases", action="store_true", help="leave the bench's databases behind")
    parser.add_argument("--no-logging-check", dest="logging_check", action="store_false", default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy the workers under the hot-product load")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--report", type=Path, help="only rebuild the .md and .png of an earlier run's .jsonl")
    parser.add_argument(
        "--seed",
        type=Path,
        help="a checkout of the seed (order-service/app.py, inventory-service/app.py): measured in the same run",
    )
    parser.add_argument(
        "--seed-python",
        default=sys.executable,
        help="the Python that runs the seed, with its requirements installed (default: this one)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        # One level: two stacks take ~20 s to start on 2 busy cores, so 1 and 32 clients would not fit a minute.
        defaults = {"duration": 2, "warmup": 0, "clients": "32", "topologies": "sqlite,postgresql", "logging": False}
    elif args.full:
        defaults = {"duration": 10, "warmup": 2, "clients": "1,8,32,64", "topologies": ",".join(TOPOLOGIES)}
    else:
        defaults = {"duration": 5, "warmup": 1, "clients": "1,32", "topologies": ",".join(TOPOLOGIES)}
    args.duration = args.duration or defaults["duration"]
    args.warmup = defaults["warmup"] if args.warmup is None else args.warmup
    args.clients = [int(c) for c in (args.clients or defaults["clients"]).split(",")]
    args.topologies = (args.topologies or defaults["topologies"]).split(",")
    args.scenarios = (args.scenarios or ",".join(report.SERVICE_SCENARIOS)).split(",")
    if args.logging_check is None:
        args.logging_check = defaults.get("logging", True)
    if args.seed and not all((args.seed / f"{s}-service" / "app.py").is_file() for s in ("order", "inventory")):
        parser.error(f"--seed {args.seed}: no order-service/app.py and inventory-service/app.py there")
    for name in args.topologies:
        if name not in TOPOLOGIES:
            parser.error(f"unknown topology {name}")
    for name in args.scenarios:
        if name not in report.SERVICE_SCENARIOS:
            parser.error(f"unknown scenario {name}")
    return args


def rebuild(jsonl: Path) -> int:
    """The summary and chart of an earlier run, from its JSON lines (e.g. after the report changed)."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    first = records[0]
    clients = sorted({r["clients"] for r in records})
    header = [
        f"# Benchmark {first['run']}",
        "",
        f"Machine: {first['nproc']} cores, {first['cpu_model']}; granian {first['workers']} workers x "
        f"{first['threads']} threads; {first['duration_s']:.0f}s per run, clients {', '.join(map(str, clients))}.",
    ]
    markdown = report.Results(records).markdown(header)
    jsonl.with_suffix(".md").write_text(markdown)
    report.chart(records, jsonl.with_suffix(".png"), f"bench {first['run']} ({first['nproc']} cores)")
    print(markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return rebuild(args.report)
    for program in ("wrk", "pgbench"):
        if shutil.which(program) is None:
            package = "wrk" if program == "wrk" else "postgresql-client"
            print(f"{program} is not installed (apt-get install {package})")
            return 2

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through every finally: servers stopped, databases dropped

    signal.signal(signal.SIGTERM, stop)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
