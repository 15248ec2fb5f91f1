"""Benchmarks of both services against their ceilings (see bench/run.py and docs/performance.md)."""
