#!/bin/sh
# STAND-IN entrypoint (see README.md): what the official postgres image's entrypoint does for this project.
# First start on an empty PGDATA: initdb (superuser `postgres` with POSTGRES_PASSWORD, scram-sha-256 over TCP,
# trust on the local socket), the /docker-entrypoint-initdb.d scripts (*.sh run with sh, *.sql with psql)
# against a server on the socket only, then the real server listening on every address.
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi
case " $* " in *" --help "* | *" --version "* | *" -V "* | *" -C "* | *" --describe-config "*) exec "$@" ;; esac
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  mkdir -p "$PGDATA" && chmod 0700 "$PGDATA"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" --username=postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "entrypoint: running $f"; sh "$f" ;;
      *.sql) echo "entrypoint: running $f"; psql --no-psqlrc -v ON_ERROR_STOP=1 --username postgres -f "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "entrypoint: database initialised"
fi
exec "$@"
