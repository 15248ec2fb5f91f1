#!/usr/bin/env bash
# STAND-IN for the official nats:<tag>-alpine, only for machines where no container registry is reachable (see
# README.md). Builds it from `debootstrap --variant=minbase bookworm` with Debian's nats-server (and wget, which
# the official alpine image has in busybox and compose.yaml's healthcheck uses).
# Usage: deploy/standins/nats.sh MIRROR [TAG]     (MIRROR: a Debian mirror URL, from the machine's apt sources)
set -euo pipefail
mirror=$1
tag=${2:-nats:2.9.10-alpine}
here=$(cd "$(dirname "$0")" && pwd)
# The engine's own client (docker.io), whatever else is earlier in PATH.
docker() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
debootstrap --variant=minbase --include=nats-server,wget bookworm "$root" "$mirror" >"$work/debootstrap.log" ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/debootstrap
: >"$root/etc/resolv.conf"

tar -C "$root" -c . | docker import - "$tag-rootfs" >/dev/null
docker build --quiet --build-arg "ROOTFS=$tag-rootfs" -t "$tag" -f "$here/nats.Dockerfile" "$here" >/dev/null
docker rmi "$tag-rootfs" >/dev/null
docker run --rm "$tag" nats-server --version
