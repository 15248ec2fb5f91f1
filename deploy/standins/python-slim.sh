#!/usr/bin/env bash
# STAND-IN for the official python:3.12-slim, only for machines where no container registry is reachable
# (see README.md). Builds the image from `debootstrap --variant=minbase bookworm` and this machine's CPython 3.12.
# Usage: deploy/standins/python-slim.sh MIRROR [TAG]     (MIRROR: a Debian mirror URL, from the machine's apt sources)
set -euo pipefail
mirror=$1
tag=${2:-python:3.12-slim}
here=$(cd "$(dirname "$0")" && pwd)
# The engine's own client (docker.io), whatever else is earlier in PATH.
docker() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }
python=${PYTHON_312:-/root/.pyenv/versions/3.12.1}
version=$("$python/bin/python3" -c 'import platform; print(platform.python_version())')
case "$version" in 3.12.*) ;; *) echo "PYTHON_312=$python is Python $version, not 3.12" >&2; exit 1 ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
# The shared libraries CPython's modules link against (ssl, ctypes, sqlite3, curses, readline, dbm, …), and
# what the official slim image carries besides (netbase, tzdata).
libs=libssl3,libffi8,libsqlite3-0,libncursesw6,libreadline8,libbz2-1.0,liblzma5,zlib1g,libuuid1,libgdbm6,libnsl2
debootstrap --variant=minbase --include="$libs,netbase,tzdata" bookworm "$root" "$mirror" >"$work/debootstrap.log" ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# CPython into /usr/local, as the official image has it, minus what that image also drops (tests, static
# library, bytecode) and minus this machine's third-party packages: pip only.
tar -C "$python" --exclude=./lib/python3.12/site-packages -cf - . | tar -C "$root/usr/local" -xf -
mkdir -p "$root/usr/local/lib/python3.12/site-packages"
cp -a "$python"/lib/python3.12/site-packages/pip "$python"/lib/python3.12/site-packages/pip-*.dist-info \
  "$root/usr/local/lib/python3.12/site-packages/"
find "$root/usr/local" -depth \( \( -type d -a \( -name test -o -name tests -o -name idle_test \) \) \
  -o \( -type f -a \( -name '*.pyc' -o -name '*.pyo' -o -name 'libpython*.a' \) \) \) -exec rm -rf '{}' +
# Scripts name the interpreter by its old path; the library is found through ld.so.cache (/usr/local/lib).
grep -rlI "^#!$python/bin/" "$root/usr/local/bin" | xargs -r sed -i "1s|^#!$python/bin/|#!/usr/local/bin/|"
sed -i "s|$python|/usr/local|g" "$root/usr/local/bin/python3.12-config"
chroot "$root" /sbin/ldconfig

# The host's CA bundle, and pip pointed at it: a build reaches the package index the way this machine does.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/debootstrap
: >"$root/etc/resolv.conf"

tar -C "$root" -c . | docker import - "$tag-rootfs" >/dev/null
docker build --quiet --build-arg "ROOTFS=$tag-rootfs" --build-arg "PYTHON_VERSION=$version" \
  -t "$tag" -f "$here/python-slim.Dockerfile" "$here" >/dev/null
docker rmi "$tag-rootfs" >/dev/null
docker run --rm "$tag" python -c 'import ssl, sqlite3, ctypes, venv, zlib, lzma, bz2; print("python", __import__("sys").version.split()[0], ssl.OPENSSL_VERSION)'
docker run --rm "$tag" pip --version
