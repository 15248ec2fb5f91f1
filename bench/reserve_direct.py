"""Inventory's reserve path without the web stack: `python -m bench.reserve_direct`.

N threads of this one process each reserve one unit of one product for a new order id, again and again
for a fixed time, through inventory's ReserveBatcher (RESERVE_BATCH_MAX, 1: each reserve alone) on the
bench's own PostgreSQL database; then pgbench's hot row (bench/pgbench/hot.sql) at the same N, in the
same run. It shows what the group commit does at the database once the HTTP layer's CPU is out of the
way (as it is when the services run on other machines than the database): reserves per second against
the single-row ceiling, reserves per transaction, and CPU per reserve of this process and of PostgreSQL.
Only reserves that created a reservation count, and the product's stock must fall by exactly that many.

    python -m bench.reserve_direct                       # 64 threads, 5 s, batches of up to 64 and of 1
    python -m bench.reserve_direct --clients 64 --seconds 10 --batch-max 64,1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import PGBENCH, PgBackends, run_pgbench  # noqa: E402
from bench.run import DEFAULT_PG  # noqa: E402
from bench.stacks import HOT, PgServer  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reserves(pg: PgServer, database: str, clients: int, seconds: float, batch_max: int) -> dict[str, Any]:
    """`clients` threads reserving one unit of one product each, through a ReserveBatcher, for `seconds`."""
    from decimal import Decimal

    from inventory_service import MIGRATIONS, storage
    from inventory_service.batching import ReserveBatcher
    from inventory_service.domain import Line
    from service_common.storage import create_db_engine, run_migrations

    url = pg.recreate(database)
    run_migrations(MIGRATIONS, url)
    engine = create_db_engine(url, pool_size=clients + 2, pool_timeout=30)
    sizes: Counter[int] = Counter()
    lock = threading.Lock()

    def observe(n: int) -> None:
        with lock:
            sizes[n] += 1

    batcher = ReserveBatcher(engine, batch_max, observe)
    stock = 10**12
    storage.create_product(engine, HOT, "hot", Decimal("9.99"), stock)
    created = [0] * clients
    errors: Counter[str] = Counter()
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(n: int) -> None:
        start.wait()
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if batcher.reserve(f"d{batch_max}-{n}-{i}", [Line(HOT, 1)]).created:
                    created[n] += 1
            except Exception as exc:  # counted, not raised: the run goes on
                errors[type(exc).__name__] += 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    backends = PgBackends(pg.target.conninfo("postgres"), [database])
    backends.start()
    cpu0, t0 = _cpu(), time.monotonic()
    start.wait()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed, cpu = time.monotonic() - t0, _cpu() - cpu0
    pg_cpu = backends.stop()
    drop = stock - storage.get_product(engine, HOT).available_quantity
    engine.dispose()
    pg.drop(database)
    total = sum(created)
    transactions = sum(sizes.values())
    total_in_batches = sum(n * k for n, k in sizes.items())
    return {
        "scenario": "reserve_direct",
        "batch_max": batch_max,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "reserves_per_s": round(total / elapsed, 1),
        "created": total,
        "stock_drop": drop,
        "errors": dict(errors),
        "transactions": transactions,
        "reserves_per_transaction": round(total_in_batches / transactions, 2) if transactions else 0,
        "largest_batch": max(sizes) if sizes else 0,
        "cpu_ms_per_reserve": {
            "python": round(1000 * cpu / total, 3) if total else None,
            "postgres": round(1000 * pg_cpu / total, 3) if total else None,
        },
    }


def ceiling(pg: PgServer, database: str, clients: int, seconds: int) -> dict[str, Any]:
    """pgbench's hot row at `clients` (bench/pgbench/hot.sql, as `make bench` runs it)."""
    pg.recreate(database)
    try:
        pg.run_script(database, (PGBENCH / "schema.sql").read_text())
        target = dataclasses.replace(pg.target, database=database)
        backends = PgBackends(pg.target.conninfo("postgres"), [database])
        backends.start()
        with tempfile.TemporaryDirectory(prefix="bench-direct-") as work:
            result = run_pgbench(target, "hot", clients, seconds, Path(work), {"product": HOT})
        pg_cpu = backends.stop()
    finally:
        pg.drop(database)
    return {
        "scenario": "pgbench_hot",
        "clients": clients,
        "seconds": seconds,
        "updates_per_s": round(result.rps, 1),
        "cpu_ms_per_update": {"postgres": round(1000 * pg_cpu / result.successes, 3) if result.successes else None},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reserve_direct", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--batch-max", default="64,1", help="comma-separated RESERVE_BATCH_MAX values to run")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server (loopback only)")
    parser.add_argument("--db-prefix", default="bench")
    args = parser.parse_args(argv)
    pg = PgServer(args.pg_url)
    database = f"{args.db_prefix}_direct"
    results = [reserves(pg, database, args.clients, args.seconds, int(b)) for b in args.batch_max.split(",")]
    results.append(ceiling(pg, database, args.clients, args.seconds))
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
