"""Schemathesis against both live services, from the documents they serve (`/openapi.json`): no 5xx,
and every answer conforms to the document (status, content type, headers, body), through examples,
coverage (boundary and invalid values), fuzzing and stateful (chained calls) phases, with the service
and admin tokens so the protected operations are exercised too.

The checks, and every one left out or relaxed with its reason, are in tests/schemathesis.toml and
tests/schemathesis_hooks.py (docs/api-testing.md says the same in prose). The CLI is used rather than
the pytest integration: its fixture-based loader does not work with pytest 9.2, and it brings every
phase and a time budget.

Time: both services are tested at once, each for SCHEMATHESIS_MAX_TIME seconds (20 by default) per
database engine. A failure prints the seed; SCHEMATHESIS_SEED=<seed> runs the same cases again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.processes import ROOT
from tests.topology import ADMIN_TOKEN, SERVICE_TOKEN, Stack

CONFIG = ROOT / "tests" / "schemathesis.toml"
MAX_TIME = int(os.environ.get("SCHEMATHESIS_MAX_TIME", "20"))
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))  # per operation and round of fuzzing


def _start(url: str, report: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME),
        # One worker: with several, hypothesis' ast.parse ran in concurrent threads and CPython 3.11.7
        # failed it ("AST constructor recursion depth mismatch"), an error of the tool, not of the API.
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    if os.environ.get("SCHEMATHESIS_SEED"):
        command += ["--seed", os.environ["SCHEMATHESIS_SEED"]]
    env = {**os.environ, "SERVICE_TOKEN": SERVICE_TOKEN, "ADMIN_TOKEN": ADMIN_TOKEN}
    with open(report, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _outcome(report: Path) -> str:
    """What to show of a run: from its first failure or error on, else its summary."""
    text = report.read_text(errors="replace")
    for marker in ("= FAILURES =", "= ERRORS ="):
        start = text.find(marker)
        if start != -1:
            return text[text.rfind("\n", 0, start) + 1 :][-12_000:]
    return text[-3_000:]


@pytest.mark.timeout(MAX_TIME * 3 + 60)
def test_both_services_conform_to_their_documents(services: Stack, tmp_path: Path) -> None:
    runs = {
        name: (report, _start(url, report))
        for name, url in (("inventory", services.inventory.url), ("order", services.order.url))
        for report in [tmp_path / f"schemathesis-{name}.txt"]
    }
    problems = []
    for name, (report, proc) in runs.items():
        try:
            code = proc.wait(timeout=MAX_TIME * 3 + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        if code != 0:
            problems.append(f"--- {name} service (exit {code}; full output in {report}):\n{_outcome(report)}")
    assert not problems, "\n".join(problems) + "\n" + services.logs()
