#!/usr/bin/env bash
# STAND-IN for the official postgres:<tag>, only for machines where no container registry is reachable (see
# README.md). Builds it from `debootstrap --variant=minbase trixie` and Debian's postgresql-17.
# Usage: deploy/standins/postgres.sh MIRROR [TAG]     (MIRROR: a Debian mirror URL, from the machine's apt sources)
set -euo pipefail
mirror=$1
tag=${2:-postgres:17.6}
here=$(cd "$(dirname "$0")" && pwd)
# The engine's own client (docker.io), whatever else is earlier in PATH.
docker() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }
major=17

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
debootstrap --variant=minbase trixie "$root" "$mirror" >"$work/debootstrap.log" ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# postgres as uid/gid 999 as in the official image (k8s/10-postgres.yaml runs it as 999), created before the
# package would pick another id; no cluster made at install time (the entrypoint makes one in PGDATA) and no
# service started in the chroot.
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mkdir -p "$root/etc/postgresql-common"
echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
chroot "$root" /bin/sh -euc "
  groupadd --system --gid 999 postgres
  useradd --system --gid postgres --uid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-$major >/dev/null
  apt-get clean
" >"$work/install.log" 2>&1 || { tail -n 30 "$work/install.log" >&2; exit 1; }
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/debootstrap
: >"$root/etc/resolv.conf"

tar -C "$root" -c . | docker import - "$tag-rootfs" >/dev/null
docker build --quiet --build-arg "ROOTFS=$tag-rootfs" --build-arg "PG_MAJOR=$major" \
  -t "$tag" -f "$here/postgres.Dockerfile" "$here" >/dev/null
docker rmi "$tag-rootfs" >/dev/null
docker run --rm "$tag" postgres --version
