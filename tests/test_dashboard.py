"""The Grafana dashboard charts metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests

from tests.stack_client import Api

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "order-processing.json"


def test_every_metric_on_the_dashboard_is_exported(api: Api) -> None:
    # Traffic first, so the lazily created series exist.
    api.place("P003", 1)
    api.place("P003", 100_000 - 1)
    exported = set()
    for url in (api.order_url, api.inventory_url):
        text = requests.get(f"{url}/metrics", timeout=10).text
        exported |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b([a-z_]+(?:_total|_bucket|_quantity|_open))\b", target["expr"])
    }
    assert wanted, "the dashboard names no metrics"
    missing = wanted - exported
    # Retries and worker actions appear only after they happen; their families are declared all the same.
    assert missing <= {"inventory_call_retries_total", "order_worker_actions_total"}, missing
