"""The benchmark's comparison with the seed (`python -m bench --seed DIR`): the seed's runs are kept apart
from ours, set beside ours scenario by scenario, and judged against "≥ 2x the seed's throughput"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.run import parse_args


def run(topology: str, engine: str, scenario: str, rps: float, cpu: dict[str, float], p99: float = 50.0) -> Any:
    return {
        "kind": "service",
        "scenario": scenario,
        "topology": topology,
        "engine": engine,
        "log_level": "WARNING",
        "clients": 32,
        "rps": rps,
        "mean_ms": p99 / 2,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "max_ms": p99,
        "errors": {},
        "cpu_per_1k": {**cpu, "wrk": 0.04},
        "other_cpu_pct": 0.0,
    }


RECORDS = [
    run("seed", "memory", "order_hot", 280.0, {"order": 3.0, "inventory": 2.0}, p99=400.0),
    run("seed", "memory", "read", 1400.0, {"order": 0.0, "inventory": 0.8}),
    run("single", "sqlite", "order_hot", 600.0, {"order": 1.5, "inventory": 1.0}),
    run("single", "postgresql", "order_hot", 420.0, {"order": 2.0, "inventory": 1.5, "postgres": 1.0}),
    run("single", "sqlite", "read", 5600.0, {"order": 0.0, "inventory": 0.28}),
]


def test_the_seed_is_judged_against_twice_its_order_throughput() -> None:
    targets = "\n".join(report.Results(RECORDS).targets())
    assert "| order_hot ≥ 2x the seed | single sqlite | 32 | 2.14x (600 vs 280/s) | yes |" in targets
    assert "| order_hot ≥ 2x the seed | single postgresql | 32 | 1.50x (420 vs 280/s) | **no** |" in targets


def test_the_seed_is_not_one_of_our_services() -> None:
    results = report.Results(RECORDS)
    assert {r["topology"] for r in results.services()} == {"single"}
    # Our targets (CPU per order, read CPU, p99) are not judged on the seed's runs.
    assert all("| seed" not in line for line in results.targets())
    assert all("| seed |" not in line for line in results.table())


def test_the_seed_is_set_beside_each_of_our_engines() -> None:
    lines = report.Results(RECORDS).against_seed()
    rows = [line for line in lines[2:] if line.startswith("| order_hot")]
    assert len(rows) == 2
    sqlite = next(r for r in rows if "single sqlite" in r)
    # ok/s ÷ seed, p99 ÷ seed, CPU per order ÷ seed's (2.5 against 5.0 ms)
    assert "| 2.14x |" in sqlite and "| 0.12x |" in sqlite and "| 0.50x |" in sqlite
    markdown = report.Results(RECORDS).markdown(["# t"])
    assert "## Against the seed" in markdown


def test_no_seed_no_comparison() -> None:
    ours = [r for r in RECORDS if r["topology"] != "seed"]
    assert report.Results(ours).against_seed() == []
    assert "Against the seed" not in report.Results(ours).markdown(["# t"])


def test_seed_option_needs_both_apps(tmp_path: Path) -> None:
    (tmp_path / "order-service").mkdir()
    (tmp_path / "order-service" / "app.py").write_text("")
    with pytest.raises(SystemExit):
        parse_args(["--seed", str(tmp_path)])
    (tmp_path / "inventory-service").mkdir()
    (tmp_path / "inventory-service" / "app.py").write_text("")
    assert parse_args(["--seed", str(tmp_path)]).seed == tmp_path
