"""Reading what ships, for the tests that hold it against the applications: the Kubernetes manifests in k8s/,
compose.yaml, the Dockerfiles, and the settings each service reads (its pydantic Settings class)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from local.processes import ROOT

K8S = ROOT / "k8s"
NAMESPACE = "order-processing"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


@dataclass(frozen=True)
class Service:
    """One of our services: its directory, package, image and the settings class it reads."""

    name: str  # order-service
    module: str  # order_service

    @property
    def dir(self) -> Path:
        return ROOT / self.name

    @property
    def version(self) -> str:
        return tomllib.loads((self.dir / "pyproject.toml").read_text())["project"]["version"]

    @property
    def image(self) -> str:
        return f"{self.name}:{self.version}"

    def settings_class(self) -> Any:
        module = __import__(f"{self.module}.settings", fromlist=["Settings"])
        return module.Settings

    def setting_names(self) -> set[str]:
        return {name.upper() for name in self.settings_class().model_fields}

    def dockerfile(self) -> Dockerfile:
        return Dockerfile.parse(self.dir / "Dockerfile")


INVENTORY = Service("inventory-service", "inventory_service")
ORDER = Service("order-service", "order_service")
SERVICES = (INVENTORY, ORDER)

# Variables a container may set that are not settings of the app: the interpreter's own.
PYTHON_ENV = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PATH"}
# Settings whose defaults are wrong or unsafe in a container, so a manifest must set them, by command.
MUST_SET = {
    "serve": {"DATABASE_URL", "HOST", "PORT", "SCRATCH_DIR", "SERVICE_TOKEN", "ADMIN_TOKEN"},
    "worker": {"DATABASE_URL", "SERVICE_TOKEN", "INVENTORY_URL"},
    "migrate": {"DATABASE_URL"},
}
ORDER_MUST_SET = {"serve": {"INVENTORY_URL"}}
# Settings that are credentials: only ever from a Secret.
SECRET_SETTINGS = {
    "DATABASE_URL",
    "SERVICE_TOKEN",
    "SERVICE_TOKEN_NEXT",
    "ADMIN_TOKEN",
    "ADMIN_TOKEN_NEXT",
    "EVENTS_TOKEN",
    "EVENTS_TOKEN_NEXT",
}


# --- Dockerfiles -------------------------------------------------------------------------------------------


@dataclass
class Dockerfile:
    """The final stage of a Dockerfile: what the image runs with."""

    env: dict[str, str]
    expose: list[int]
    cmd: list[str]
    user: str
    healthcheck: str
    froms: list[str]
    runs: list[str]
    copies: list[str]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        text = re.sub(r"\\\n", " ", path.read_text())
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
        last = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
        env: dict[str, str] = {}
        expose: list[int] = []
        cmd: list[str] = []
        user = healthcheck = ""
        runs: list[str] = []
        copies: list[str] = []
        for line in lines[last + 1 :]:
            instruction, _, rest = line.partition(" ")
            instruction = instruction.upper()
            if instruction == "ENV":
                for item in shlex.split(rest):
                    key, _, value = item.partition("=")
                    env[key] = value
            elif instruction == "EXPOSE":
                expose += [int(p.split("/")[0]) for p in rest.split()]
            elif instruction == "CMD":
                cmd = json.loads(rest)
            elif instruction == "USER":
                user = rest.strip()
            elif instruction == "HEALTHCHECK":
                healthcheck = rest
            elif instruction == "RUN":
                runs.append(rest)
            elif instruction == "COPY":
                copies.append(rest)
        return cls(env, expose, cmd, user, healthcheck, froms, runs, copies)


# --- Kubernetes manifests ----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """The files `kubectl apply -f k8s/` reads, in the order it reads them."""
    return sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


@cache
def objects() -> tuple[dict[str, Any], ...]:
    return tuple(doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc)


def get(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} in k8s/, found {len(found)}"
    return found[0]


def of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [o for o in objects() if o["kind"] in kinds]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics: matchLabels and matchExpressions, all must hold ({} selects all)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def config_value(ref: dict[str, Any], kind: str) -> str | None:
    obj = get(kind, ref["name"])
    data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
    if ref["key"] not in data:
        assert ref.get("optional"), f"{kind}/{ref['name']} has no key {ref['key']}"
        return None
    return str(data[ref["key"]])


@dataclass
class EnvVar:
    value: str
    source: str  # "literal", "ConfigMap/<name>", "Secret/<name>"


def container_env(container: dict[str, Any]) -> dict[str, EnvVar]:
    """The environment Kubernetes gives a container: envFrom first, then env entries (later wins)."""
    env: dict[str, EnvVar] = {}
    for source in container.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                obj = get(kind, source[key]["name"])
                data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
                env.update({k: EnvVar(str(v), f"{kind}/{obj['metadata']['name']}") for k, v in data.items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = EnvVar(str(item["value"]), "literal")
            continue
        value_from = item["valueFrom"]
        for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if key in value_from:
                value = config_value(value_from[key], kind)
                if value is not None:
                    env[item["name"]] = EnvVar(value, f"{kind}/{value_from[key]['name']}")
    return env


def configmap_volume_files(volume: dict[str, Any]) -> dict[str, str]:
    """The files a configMap volume holds, by path in the mount: every key, or what `items` names."""
    source = volume["configMap"]
    data = get("ConfigMap", source["name"]).get("data") or {}
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    return {item["path"]: str(data[item["key"]]) for item in items}


def service_of(workload: dict[str, Any]) -> Service:
    name = pod_labels(workload)["app.kubernetes.io/name"]
    return next(s for s in SERVICES if s.name == name)


def app_workloads() -> list[dict[str, Any]]:
    """Deployments and Jobs that run one of our images."""
    return [
        w
        for w in of_kind("Deployment", "Job")
        if pod_labels(w)["app.kubernetes.io/name"] in {"order-service", "inventory-service"}
    ]


def command_of(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


# --- compose.yaml ------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def interpolate(value: str, environ: dict[str, str] | None = None) -> str:
    """compose's ${VAR}, ${VAR:-default} and ${VAR-default}, from `environ` (empty: the defaults)."""
    environ = environ or {}

    def sub(m: re.Match[str]) -> str:
        name, op, default = m.group(1), m.group(2) or "", m.group(3) or ""
        if op == ":-":
            return environ.get(name) or default
        if op == "-":
            return environ.get(name, default)
        return environ.get(name, "")

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", sub, value)
