"""compose.yaml held against the applications and the cluster manifests: its services, ports, healthchecks and
dependencies, and environments that are exactly settings the apps read, with values they accept."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests

from local.processes import ROOT, free_port, migrate, wait_until
from tests.manifests import (
    INVENTORY,
    MUST_SET,
    ORDER,
    ORDER_MUST_SET,
    PYTHON_ENV,
    SERVICES,
    Service,
    command_of,
    compose,
    container_env,
    get,
    interpolate,
    pod_spec,
)
from tests.topology import Process, base_env

APPS = {
    "inventory-migrate": (INVENTORY, "migrate"),
    "order-migrate": (ORDER, "migrate"),
    "inventory-service": (INVENTORY, "serve"),
    "order-service": (ORDER, "serve"),
    "order-worker": (ORDER, "worker"),
}


def services() -> dict[str, Any]:
    return compose()["services"]


def env_of(name: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    return {k: interpolate(str(v), environ) for k, v in services()[name]["environment"].items()}


def test_services_and_their_order_of_start() -> None:
    svc = services()
    assert set(svc) == {"postgres", "nats", *APPS}
    for name, (service, role) in APPS.items():
        depends = svc[name]["depends_on"]
        if role == "migrate":
            assert depends == {"postgres": {"condition": "service_healthy"}}
            assert svc[name]["restart"] == "no"
        else:
            migrate_step = f"{service.name.removesuffix('-service')}-migrate"
            assert depends[migrate_step] == {"condition": "service_completed_successfully"}
    assert svc["order-service"]["depends_on"]["inventory-service"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", sorted(APPS))
def test_each_app_runs_its_entry_point_from_the_versioned_image(name: str) -> None:
    service, role = APPS[name]
    svc = services()[name]
    assert svc["image"] == service.image
    assert svc["build"] == {"context": ".", "dockerfile": f"{service.name}/Dockerfile"}
    assert (ROOT / svc["build"]["dockerfile"]).is_file()
    assert svc["command"] == ["python", "-m", service.module, role]
    if role == "serve":
        assert svc["command"] == service.dockerfile().cmd
    # Hardened as in the cluster: the image's user, read-only root, scratch on tmpfs.
    assert svc["user"] == service.dockerfile().user
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]
    scratch = env_of(name).get("SCRATCH_DIR")
    if scratch:
        assert any(t.split(":")[0] == scratch for t in svc["tmpfs"])


@pytest.mark.parametrize("name", sorted(APPS))
def test_environment_is_settings_the_app_reads_with_values_it_accepts(name: str) -> None:
    service, role = APPS[name]
    env = env_of(name)
    unknown = set(env) - service.setting_names() - PYTHON_ENV
    assert not unknown, f"set but read by no one: {sorted(unknown)}"
    needed = MUST_SET[role] | (ORDER_MUST_SET.get(role, set()) if service is ORDER else set())
    assert needed <= set(env), f"missing: {sorted(needed - set(env))}"
    service.settings_class()(**{k.lower(): v for k, v in env.items() if k in service.setting_names()})
    # The database is the one the init script creates for this service, with the password postgres gets.
    url = urllib.parse.urlsplit(env["DATABASE_URL"])
    db = {"inventory-service": "inventory", "order-service": "orders"}[service.name]
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert (url.path, url.username) == (f"/{db}", db)
    password_var = {"inventory": "INVENTORY_DB_PASSWORD", "orders": "ORDER_DB_PASSWORD"}[db]
    for environ in ({}, {password_var: "chosen"}):
        assert urllib.parse.urlsplit(env_of(name, environ)["DATABASE_URL"]).password == interpolate(
            services()["postgres"]["environment"][password_var], environ
        )


def test_ports_healthchecks_and_urls_agree_with_the_apps() -> None:
    svc = services()
    inventory_port = int(env_of("inventory-service")["PORT"])
    for name, host_port in (("inventory-service", 5001), ("order-service", 30000)):
        port = int(env_of(name)["PORT"])
        assert svc[name]["ports"] == [f"127.0.0.1:{host_port}:{port}"]
        assert port == APPS[name][0].dockerfile().expose[0]
        test = svc[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"] and f"http://127.0.0.1:{port}/health/ready" in test[3]
    assert env_of("order-service")["INVENTORY_URL"] == f"http://inventory-service:{inventory_port}"
    assert svc["order-worker"]["healthcheck"]["test"][:3] == ["CMD", "python", "-c"]
    assert svc["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for name in ("inventory-migrate", "order-migrate"):
        assert svc[name]["healthcheck"] == {"disable": True}


def test_the_worker_publishes_to_the_broker_of_the_cluster_image_on_a_volume() -> None:
    svc = services()
    nats = svc["nats"]
    assert svc["order-worker"]["depends_on"]["nats"] == {"condition": "service_healthy"}
    assert env_of("order-worker")["EVENTS_BROKER_URL"] == "nats://nats:4222"
    assert "nats" not in svc["order-service"].get("depends_on", {})  # the server only writes the outbox
    container = pod_spec(get("StatefulSet", "nats"))["containers"][0]
    assert nats["image"] == container["image"]
    assert nats["command"] == command_of(container)
    assert "natsdata:/data" in nats["volumes"] and "-js" in nats["command"]
    assert "ports" not in nats  # only the worker reaches it, as in the cluster's NetworkPolicy
    assert nats["read_only"] is True and nats["cap_drop"] == ["ALL"]
    probe = container["readinessProbe"]["httpGet"]
    assert f"http://127.0.0.1:8222{probe['path']}" in nats["healthcheck"]["test"]


def test_postgres_runs_the_init_script_and_the_cluster_image() -> None:
    pg = services()["postgres"]
    assert "./deploy/create-databases.sh:/docker-entrypoint-initdb.d/create-databases.sh:ro" in pg["volumes"]
    assert pg["image"] == pod_spec(get("StatefulSet", "postgres"))["containers"][0]["image"]
    assert {"POSTGRES_PASSWORD", "INVENTORY_DB_PASSWORD", "ORDER_DB_PASSWORD"} <= set(pg["environment"])


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_settings_match_the_cluster_configmap(service: Service) -> None:
    """Same values as k8s/02-config.yaml, but for the drain: compose removes no endpoint before SIGTERM."""
    (container,) = pod_spec(get("Deployment", service.name))["containers"]
    cluster = {k: v.value for k, v in container_env(container).items() if v.source.startswith("ConfigMap/")}
    local = env_of(service.name)
    differ = {k for k in cluster.keys() & local.keys() if cluster[k] != local[k]}
    assert differ == {"DRAIN_SECONDS"}
    # Customer auth differs on purpose: off in compose.yaml (the seed's curl walkthrough, no identity
    # provider), on in the cluster's example config (CUSTOMER_AUTH=jwt and its key, docs/security.md).
    customer_auth = {"CUSTOMER_AUTH", "JWT_PUBLIC_KEY_FILE", "JWT_AUDIENCE"}
    assert local.get("CUSTOMER_AUTH", "none") == "none"
    assert set(cluster) - set(local) <= {
        "INVENTORY_CONNECT_TIMEOUT",
        "INVENTORY_READ_TIMEOUT",
        "INVENTORY_RETRIES",
        *(customer_auth if service is ORDER else ()),
    }


def _run_check(test: list[str], env: dict[str, str]) -> int:
    assert test[:2] == ["CMD", "python"]
    return subprocess.run([sys.executable, *test[2:]], env=env, capture_output=True, timeout=60).returncode


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def test_worker_healthcheck_needs_its_probe_server_and_the_database_at_head(tmp_path: Path) -> None:
    """compose's worker healthcheck asks the worker's own readiness (WORKER_METRICS_PORT): fresh heartbeat,
    database up, schema at head."""
    port = int(env_of("order-worker")["WORKER_METRICS_PORT"])
    test = services()["order-worker"]["healthcheck"]["test"]
    assert f"http://127.0.0.1:{port}/health/ready" in test[3]
    local_port = free_port()
    check = [*test[:3], test[3].replace(f":{port}/", f":{local_port}/")]
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'orders.db'}", PORT="0", WORKER_METRICS_PORT=str(local_port))
    assert _run_check(check, env) != 0  # no worker yet
    worker = Process("order_service", "worker", env, tmp_path / "worker.log", local_port).start()
    try:
        wait_until(lambda: _answers(f"{worker.url}/health/live"), what="the worker to serve")
        assert _run_check(check, env) != 0  # no schema yet
        migrate("order_service", env)
        wait_until(lambda: _run_check(check, env) == 0, what="the worker's healthcheck to pass")
    finally:
        worker.kill()


def test_image_and_compose_healthchecks_answer_on_a_running_server(tmp_path: Path) -> None:
    """The image's HEALTHCHECK (live, on $PORT) and compose's (ready) as the engine would run them."""
    port = free_port()
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'inventory.db'}", PORT=str(port), SCRATCH_DIR=str(tmp_path))
    migrate("inventory_service", env)
    server = Process("inventory_service", "serve", env, tmp_path / "inventory.log", port).start()
    try:
        image_check = INVENTORY.dockerfile().healthcheck
        argv = json.loads(image_check[image_check.index("CMD ") + 4 :])
        assert _run_check(["CMD", *argv], env) == 0
        compose_check = services()["inventory-service"]["healthcheck"]["test"]
        assert _run_check([*compose_check[:3], compose_check[3].replace(":5001/", f":{port}/")], env) == 0
        server.stop()
        assert _run_check(["CMD", *argv], env) != 0
    finally:
        server.kill()
