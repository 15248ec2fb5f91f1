#!/usr/bin/env bash
# Compare WSGI servers for our Flask services: gunicorn gthread (production), gunicorn sync, granian WSGI
# (8 blocking threads = parity with gunicorn THREADS; 4 = under granian's own 2*cores+1 warning on 2 cores).
# Apps: (a) hello-world Flask app returning tiny JSON, (b) GET /inventory/P001 of the inventory service
# (SQLite; one JSON log line per request on stdout as in production, sent to /dev/null).
# Load: wrk, 1 thread, 1 and 32 connections, DURATION each (after a short discarded warm-up).
# Loopback only. Starts and stops every server itself; each step is bounded by `timeout`.
# Usage: bench/server_choice.sh            (env: DURATION=10s WARMUP=2s PORT=18570 CONNS="1 32")
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
PORT=${PORT:-18570}
CONNS=${CONNS:-"1 32"}
HOST=127.0.0.1
WORK=$(mktemp -d /tmp/bench-server-choice.XXXXXX)
DB_DIR=/tmp/bench-inv
SERVER_PID=""

export PYTHONPATH="$ROOT/service-common:$ROOT/inventory-service:$WORK"
export DATABASE_URL="sqlite:///$DB_DIR/inv.db"
export SCRATCH_DIR="$WORK/scratch" LOG_LEVEL=INFO DRAIN_SECONDS=0

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    # Each server runs in its own session (setsid), so its process group id is its pid.
    kill -INT -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then echo "port $PORT is busy; set PORT=" >&2; exit 1; fi

# The two WSGI apps, importable by both servers. Logging is configured as `python -m <service> serve` does.
cat >"$WORK/benchapps.py" <<'EOF'
from flask import Flask

hello = Flask("hello")

@hello.get("/")
def index():
    return {"hello": "world"}

def inventory():
    from inventory_service import create_app
    from inventory_service.settings import Settings
    from service_common.logs import configure_logging
    configure_logging(Settings().log_level)
    return create_app()
EOF

mkdir -p "$DB_DIR"
rm -f "$DB_DIR/inv.db"
PORT=$PORT timeout 60 "$BIN/python" -m inventory_service migrate >/dev/null

# name | app | command (started with the working directory $WORK)
GUNI_GTHREAD="$BIN/gunicorn --bind $HOST:$PORT --workers 2 --worker-class gthread --threads 8 --keep-alive 75 --timeout 30"
GUNI_SYNC="$BIN/gunicorn --bind $HOST:$PORT --workers 2 --worker-class sync --timeout 30"
GRANIAN="$BIN/granian --interface wsgi --host $HOST --port $PORT --workers 2 --no-access-log"
RUNS=(
    "gunicorn gthread 2x8|hello|$GUNI_GTHREAD benchapps:hello"
    "gunicorn sync 2|hello|$GUNI_SYNC benchapps:hello"
    "granian wsgi 2w, 8 blocking threads|hello|$GRANIAN --blocking-threads 8 benchapps:hello"
    "granian wsgi 2w, 4 blocking threads|hello|$GRANIAN --blocking-threads 4 benchapps:hello"
    "gunicorn gthread 2x8 (\`serve\`)|inventory|env HOST=$HOST PORT=$PORT WEB_CONCURRENCY=2 THREADS=8 $BIN/python -m inventory_service serve"
    "gunicorn sync 2|inventory|$GUNI_SYNC benchapps:inventory()"
    "granian wsgi 2w, 8 blocking threads|inventory|$GRANIAN --blocking-threads 8 --factory benchapps:inventory"
    "granian wsgi 2w, 4 blocking threads|inventory|$GRANIAN --blocking-threads 4 --factory benchapps:inventory"
)

to_ms() {  # wrk prints 812.00us / 1.23ms / 1.02s
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ)  nproc=$(nproc)  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $("$BIN/gunicorn" --version)  $("$BIN/granian" --version)  $("$BIN/python" --version)  wrk -t1 -d$DURATION --latency"
echo
echo "| App | Server | Conns | Req/s | p50 ms | p99 ms | Errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
i=0
for run in "${RUNS[@]}"; do
    i=$((i + 1))
    IFS='|' read -r name app cmd <<<"$run"
    if [[ $app == hello ]]; then url="http://$HOST:$PORT/"; else url="http://$HOST:$PORT/inventory/P001"; fi
    (cd "$WORK" && exec setsid $cmd >/dev/null 2>"$WORK/server-$i.log") &
    SERVER_PID=$!
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server failed: $name" >&2; tail "$WORK/server-$i.log" >&2; exit 1; }
        sleep 0.2
    done
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]] || { echo "server not ready: $name" >&2; exit 1; }
    timeout 60 wrk -t1 -c32 -d"$WARMUP" "$url" >/dev/null
    for c in $CONNS; do
        out="$WORK/wrk-$i-$app-c$c.txt"
        echo "$name" >"$WORK/run-$i.name"
        timeout 120 wrk -t1 -c"$c" -d"$DURATION" --latency "$url" >"$out"
        rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
        p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
        errs=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
        echo "| $app | $name | $c | $rps | $p50 | $p99 | $errs |"
    done
    stop_server
done
echo
echo "# raw wrk output: $WORK"
