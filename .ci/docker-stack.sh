#!/usr/bin/env bash
# The images built and run for real: build both from their Dockerfiles as they ship, run compose.yaml as it
# ships, and check the stack through its containers (migrations, health, the seed's walkthrough, an order
# container killed mid-stream, PostgreSQL restarted under load); then each image run as its Kubernetes
# Deployment says (.ci/k8s_pods.py). Any failure exits non-zero: a Dockerfile or compose change that breaks
# the stack fails CI. Run by .ci/run; by hand: `sudo .ci/docker-stack.sh` (needs root: apt-get, dockerd).
#
# What it sets up when missing, and leaves in place for the next run:
#   docker.io and debootstrap (Debian packages); docker-compose v2 from Debian trixie (bookworm has only v1),
#   through an apt source derived from the machine's own sources, pinned low, removed again after the install;
#   the stand-in base images (deploy/standins/), built only where an image of that name is missing.
# dockerd is started if none answers, and stopped at the end only if this script started it.
# Env: DOCKER_STACK_KEEP=1 leaves the stack up for a look; DOCKER_STACK_PORTS=free publishes on free ports
# even when 30000 / 5001 are free (by default they move only when taken).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export DOCKER_BUILDKIT=0 # the legacy builder: BuildKit would fetch its frontend and helpers from a registry
export COMPOSE_DOCKER_CLI_BUILD=0
project=order-processing-ci
started=$(date +%s)
say() { printf '== [%3ss] %s\n' "$(($(date +%s) - started))" "$*"; }

[ "$(id -u)" = 0 ] || { echo "docker-stack.sh needs root (apt-get, dockerd)" >&2; exit 1; }

workdir=$(mktemp -d /tmp/docker-stack.XXXXXX)
dockerd_pid= compose_up= apt_extra=()
export COMPOSE_PROJECT_NAME=$project
export COMPOSE_FILE=compose.yaml
compose() { docker-compose "$@"; }
# The engine's own client (docker.io), whatever else is earlier in PATH.
docker() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }
cleanup() {
  local rc=$?
  rm -f "${apt_extra[@]}"
  if [ -n "$compose_up" ]; then compose down -v --remove-orphans >/dev/null 2>&1 || true; fi
  [ ! -x "$repo/.venv/bin/python" ] || "$repo/.venv/bin/python" "$repo/.ci/k8s_pods.py" down >/dev/null 2>&1 || true
  if [ -n "$dockerd_pid" ]; then
    say "stopping the dockerd this script started"
    kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null || true
  fi
  if [ $rc = 0 ]; then rm -rf "$workdir"; else echo "docker-stack.sh FAILED (exit $rc); logs in $workdir" >&2; fi
  exit $rc
}
trap cleanup EXIT

# --- the machine's Debian mirror, from its own apt sources (never written into the repository) -------------
sources=/etc/apt/sources.list.d/debian.sources
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
mirror_stanza() { # the deb822 stanza that serves the release itself, as "URI<TAB>Signed-By"
  awk -v suite="$codename" '
    /^[[:space:]]*$/ { if (ok && uri) { print uri "\t" key; exit } uri = key = ""; ok = 0; next }
    /^URIs:/ { uri = $2 } /^Signed-By:/ { key = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
    END { if (ok && uri) print uri "\t" key }' "$sources" | head -n 1
}
mirror() {
  local m
  m=$(mirror_stanza | cut -f1)
  [ -n "$m" ] || { echo "no Debian mirror for $codename in $sources" >&2; return 1; }
  echo "$m"
}

# --- programs ----------------------------------------------------------------------------------------------
apt_updated=
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq --no-install-recommends "$@" >"$workdir/apt.log" 2>&1 ||
    { tail -n 30 "$workdir/apt.log" >&2; return 1; }
}
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then say "installing ${missing[*]}"; apt_install "${missing[@]}"; fi

if ! docker-compose version --short 2>/dev/null | grep -q '^v\?2\.'; then
  say "installing docker-compose v2 from trixie"
  IFS=$'\t' read -r uri key < <(mirror_stanza)
  list=/etc/apt/sources.list.d/ci-docker-compose-trixie.sources
  pin=/etc/apt/preferences.d/ci-docker-compose-trixie
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$uri" "$key" >"$list"
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' >"$pin"
  apt_extra=("$list" "$pin")
  apt_updated=
  apt_install docker-compose/trixie
  rm -f "$list" "$pin"
  apt_extra=()
  docker-compose version --short | grep -q '^v\?2\.' || { echo "docker-compose is not v2" >&2; exit 1; }
fi

# --- the engine --------------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  dockerd --storage-driver=overlay2 >"$workdir/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 30 "$workdir/dockerd.log" >&2; exit 1; }
fi

# --- base images: reuse what is there; else build the stand-ins ---------------------------------------------
bases=$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' order-service/Dockerfile inventory-service/Dockerfile | sort -u)
pg_image=$(awk '/^  postgres:/{p=1} p && /image:/{print $2; exit}' compose.yaml)
nats_image=$(awk '/^  nats:/{p=1} p && /image:/{print $2; exit}' compose.yaml)
for base in $bases $pg_image $nats_image; do
  if docker image inspect "$base" >/dev/null 2>&1; then continue; fi
  case "$base" in
    python:3.12-slim) recipe=deploy/standins/python-slim.sh ;;
    postgres:*) recipe=deploy/standins/postgres.sh ;;
    nats:*) recipe=deploy/standins/nats.sh ;;
    *) echo "no stand-in recipe for $base" >&2; exit 1 ;;
  esac
  say "building stand-in $base ($recipe)"
  t0=$(date +%s)
  "$recipe" "$(mirror)" "$base"
  say "stand-in $base built in $(($(date +%s) - t0)) s"
done

# --- the images, from the Dockerfiles as they ship (compose.yaml names and tags them) ----------------------
if [ ! -x .venv/bin/python ]; then
  say "make install (the checks use the project's venv: requests, pyyaml, kubectl)"
  make install >"$workdir/install.log" 2>&1 || { tail -n 30 "$workdir/install.log" >&2; exit 1; }
fi
say "building the images"
t0=$(date +%s)
# Each image compose.yaml builds (its context, Dockerfile and tag), built with `docker build`: docker-compose's
# own context archive changes from run to run, so the legacy builder's cache missed at the first COPY and every
# requirement was downloaded again each time. The build stages are tagged too: untagged, the prune at the end
# would drop them and with them the cached wheels.
builds=$(compose config --format json | .venv/bin/python -c '
import json, sys
seen = set()
for svc in json.load(sys.stdin)["services"].values():
    if "build" in svc and svc["image"] not in seen:
        seen.add(svc["image"])
        print(svc["build"]["context"], svc["build"].get("dockerfile", "Dockerfile"), svc["image"])')
[ -n "$builds" ] || { echo "compose.yaml builds no image" >&2; exit 1; }
while read -r context dockerfile image; do
  targets=("-t $image")
  if grep -qi '^FROM .* AS build$' "$context/$dockerfile"; then
    targets=("--target build -t $project/${image%%:*}:build-stage" "${targets[@]}")
  fi
  for target in "${targets[@]}"; do
    # shellcheck disable=SC2086 # two words on purpose
    if ! docker build $target -f "$context/$dockerfile" "$context" >>"$workdir/build.log" 2>&1; then
      tail -n 60 "$workdir/build.log" >&2
      exit 1
    fi
  done
done <<<"$builds"
say "images built in $(($(date +%s) - t0)) s ($(grep -c 'Using cache' "$workdir/build.log") steps from the layer cache, $(grep -c '^Step' "$workdir/build.log") in all): $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(order|inventory)-service:' | tr '\n' ' ')"

# --- compose.yaml as it ships, up --wait; only the published ports move, and only when taken --------------
port_taken() { ! python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
order_port=30000 inventory_port=5001
if [ "${DOCKER_STACK_PORTS:-}" = free ] || port_taken 30000 || port_taken 5001; then
  order_port=$(free_port) inventory_port=$(free_port)
  cat >"$workdir/ports.yaml" <<YAML
# Published ports only: the host's 30000 / 5001 are taken (or DOCKER_STACK_PORTS=free).
services:
  inventory-service:
    ports: !override ["127.0.0.1:$inventory_port:5001"]
  order-service:
    ports: !override ["127.0.0.1:$order_port:30000"]
YAML
  export COMPOSE_FILE=compose.yaml:$workdir/ports.yaml
  say "publishing on $order_port / $inventory_port (30000 / 5001 taken, or DOCKER_STACK_PORTS=free)"
fi
compose down -v --remove-orphans >/dev/null 2>&1 || true # a previous run's leftovers
say "docker compose up --wait"
t0=$(date +%s)
compose_up=1
if ! timeout 300 docker-compose up --detach --wait --quiet-pull >"$workdir/up.log" 2>&1; then
  cat "$workdir/up.log" >&2
  compose ps -a >&2 || true
  compose logs --no-color --tail 40 >&2 || true
  exit 1
fi
say "stack healthy in $(($(date +%s) - t0)) s"

admin_token=${ADMIN_TOKEN:-local-admin-token}
if ! .venv/bin/python .ci/compose_checks.py "http://127.0.0.1:$order_port" "http://127.0.0.1:$inventory_port" "$admin_token"; then
  compose ps -a >&2 || true
  compose logs --no-color --tail 60 >&2 || true
  exit 1
fi
if [ -n "${DOCKER_STACK_KEEP:-}" ]; then
  compose_up=
  say "left up (DOCKER_STACK_KEEP): order on $order_port, inventory on $inventory_port; docker-compose -p $project down -v"
  exit 0
fi
compose down -v --remove-orphans >/dev/null 2>&1
compose_up=
say "compose stack down"

# --- each image run as its Kubernetes Deployment says (flags derived from `kubectl kustomize k8s/`) ----------
.venv/bin/python .ci/k8s_pods.py up
say "k8s-shaped pods checked"

# Earlier builds of the images and their build stages (untagged now) would pile up run after run.
docker image prune --force >/dev/null
say "done"
