#!/usr/bin/env bash
# Compare servers for our Flask services: `serve` (production: granian ASGI + service_common.serving's
# body-buffering front and thread pool, WEB_CONCURRENCY 2 x THREADS 8), granian WSGI (8 blocking threads =
# parity with THREADS), and gunicorn gthread 2x8 (the previous production server; measured when GUNICORN
# points at a gunicorn binary). Apps: (a) hello-world Flask app returning tiny JSON, (b) GET /inventory/P001
# of the inventory service (SQLite; as in production one JSON log line per request on stdout, sent to
# /dev/null, and prometheus metrics in multiprocess mode), (c) POST /inventory/check, which reads a JSON
# body. The services' code is taken from git revision REV (default HEAD; REV=worktree uses the checkout).
# Load: wrk, 1 thread, 1 and 32 connections, DURATION each (after a short discarded warm-up).
# Loopback only. Starts and stops every server itself; each step is bounded by `timeout`, and waiting for an
# idle machine by MAX_WAIT (about 16 min of measuring + at most 10 min of waiting with the defaults).
# The machine may be shared, so every server is measured in ROUNDS interleaved rounds; the table uses the
# rounds in which other processes used at most MAX_OTHER % of the CPU, and gives the server's CPU per request.
# Usage: bench/server_choice.sh   (env: DURATION=10s WARMUP=2s ROUNDS=5 REV=HEAD PORT=18570 CONNS="1 32")
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/.venv/bin"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-5}
REV=${REV:-HEAD}
PORT=${PORT:-18570}
CONNS=${CONNS:-"1 32"}
MAX_OTHER=${MAX_OTHER:-5}        # % of all cores used by others below which the machine counts as idle
QUIET_TRIES=${QUIET_TRIES:-10}   # x 2 s waiting for an idle machine before each server start
DEADLINE=$((SECONDS + ${MAX_WAIT:-600}))  # after this, no more waiting (bounds the run time)
HOST=127.0.0.1
WORK=$(mktemp -d /tmp/bench-server-choice.XXXXXX)
DB_DIR=/tmp/bench-inv
SERVER_PID=""

if [[ $REV == worktree ]]; then
    SRC=$ROOT
    REV_DESC="working tree at $(git -C "$ROOT" rev-parse --short HEAD)"
else
    SRC=$WORK/src
    mkdir -p "$SRC"
    git -C "$ROOT" archive "$REV" service-common inventory-service | tar -x -C "$SRC"
    REV_DESC="$(git -C "$ROOT" rev-parse --short "$REV")"
fi
# PYTHONPATH comes before the venv's editable installs, so the code under $SRC is what runs.
export PYTHONPATH="$SRC/service-common:$SRC/inventory-service:$WORK"
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
cat >"$WORK/benchapps.py" <<'PY'
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
PY

mkdir -p "$DB_DIR"
rm -f "$DB_DIR/inv.db"
(cd "$WORK" && timeout 60 "$BIN/python" -m inventory_service migrate >/dev/null)

# name | app | command (run in $WORK, in its own session)
GUNICORN=${GUNICORN:-}
GUNI_GTHREAD="$GUNICORN --bind $HOST:$PORT --workers 2 --worker-class gthread --threads 8 --keep-alive 75 --timeout 30"
GRANIAN="$BIN/granian --interface wsgi --host $HOST --port $PORT --workers 2 --no-access-log"
SERVE="env HOST=$HOST PORT=$PORT WEB_CONCURRENCY=2 THREADS=8"
RUNS=(
    "\`serve\` (granian asgi + buffered front 2x8)|hello|$SERVE PYTHONPATH=$PYTHONPATH:$ROOT $BIN/python -m bench.hello"
    "granian wsgi 2w, 8 blocking threads|hello|$GRANIAN --blocking-threads 8 benchapps:hello"
    "\`serve\` (granian asgi + buffered front 2x8)|inventory|$SERVE $BIN/python -m inventory_service serve"
    "granian wsgi 2w, 8 blocking threads|inventory|$GRANIAN --blocking-threads 8 --factory benchapps:inventory"
    "\`serve\` (granian asgi + buffered front 2x8)|check|$SERVE $BIN/python -m inventory_service serve"
    "granian wsgi 2w, 8 blocking threads|check|$GRANIAN --blocking-threads 8 --factory benchapps:inventory"
)
if [[ -n $GUNICORN ]]; then
    RUNS+=(
        "gunicorn gthread 2x8|hello|$GUNI_GTHREAD benchapps:hello"
        "gunicorn gthread 2x8|inventory|$GUNI_GTHREAD benchapps:inventory()"
        "gunicorn gthread 2x8|check|$GUNI_GTHREAD benchapps:inventory()"
    )
fi
# POST /inventory/check with a JSON body, for the app that reads its body.
cat >"$WORK/check.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"product_id": "P001", "quantity": 1}'
wrk.headers["Content-Type"] = "application/json"
LUA

# CPU accounting, in seconds, from /proc (busy = all but idle and iowait).
TCK=$(getconf CLK_TCK)
machine_busy() { awk -v k="$TCK" '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / k }' /proc/stat; }
group_cpu() {  # utime+stime of the processes in process group $1
    local total=0 p
    for p in $(pgrep -g "$1"); do
        total=$(awk -v t="$total" -v k="$TCK" '{ sub(/.*\) /, ""); print t + ($12 + $13) / k }' "/proc/$p/stat" 2>/dev/null || echo "$total")
    done
    echo "$total"
}
children_cpu() {  # CPU of waited-for children (wrk); `times` must run in this shell, not in a subshell
    times >"$WORK/times"
    CHILD_CPU=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$WORK/times")
}
wait_quiet() {  # wait (bounded) until the machine is idle before starting the next server
    local busy="?" b0 t0
    for _ in $(seq "$QUIET_TRIES"); do
        (( SECONDS < DEADLINE )) || return 0
        b0=$(machine_busy); t0=$(date +%s.%N); sleep 2
        busy=$(awk -v b="$b0 $(machine_busy)" -v t="$t0 $(date +%s.%N)" -v n="$(nproc)" 'BEGIN {
            split(b, B, " "); split(t, T, " "); printf "%.0f", 100 * (B[2] - B[1]) / ((T[2] - T[1]) * n) }')
        (( busy <= MAX_OTHER )) && return 0
    done
    echo "  (machine still ${busy}% busy; going on)" >&2
}
to_ms() {  # wrk prints 812.00us / 1.23ms / 1.02s
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ)  nproc=$(nproc)  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  code=$REV_DESC"
echo "# ${GUNICORN:+$("$GUNICORN" --version)  }$("$BIN/granian" --version)  $("$BIN/python" --version)  wrk -t1 -d$DURATION --latency, $ROUNDS rounds"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    order=$(seq "${#RUNS[@]}"); (( round % 2 )) || order=$(seq "${#RUNS[@]}" -1 1)  # alternate the order
    for i in $order; do
        IFS='|' read -r name app cmd <<<"${RUNS[$((i - 1))]}"
        script=()
        case $app in
            hello) url="http://$HOST:$PORT/" ;;
            inventory) url="http://$HOST:$PORT/inventory/P001" ;;
            check) url="http://$HOST:$PORT/inventory/check"; script=(-s "$WORK/check.lua") ;;
        esac
        wait_quiet
        # prometheus-client multiprocess mode, as production needs with 2 workers (`serve` sets its own).
        export PROMETHEUS_MULTIPROC_DIR="$WORK/metrics-r$round-$i"
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        (cd "$WORK" && exec setsid $cmd >/dev/null 2>"$WORK/server-$i.log") &
        SERVER_PID=$!
        for _ in $(seq 100); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' "${url%/inventory/check}${script:+/inventory/P001}") == 200 ]] && break
            kill -0 "$SERVER_PID" 2>/dev/null || { echo "server failed: $name" >&2; tail "$WORK/server-$i.log" >&2; exit 1; }
            sleep 0.2
        done
        [[ $(curl -s -o /dev/null -w '%{http_code}' "${url%/inventory/check}${script:+/inventory/P001}") == 200 ]] || { echo "server not ready: $name" >&2; exit 1; }
        timeout 60 wrk -t1 -c32 -d"$WARMUP" "${script[@]}" "$url" >/dev/null
        for c in $CONNS; do
            out="$WORK/wrk-r$round-$i-$app-c$c.txt"
            children_cpu; w0=$CHILD_CPU t0=$(date +%s.%N) m0=$(machine_busy) s0=$(group_cpu "$SERVER_PID")
            timeout 120 wrk -t1 -c"$c" -d"$DURATION" --latency "${script[@]}" "$url" >"$out"
            t1=$(date +%s.%N) m1=$(machine_busy) s1=$(group_cpu "$SERVER_PID"); children_cpu; w1=$CHILD_CPU
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$i" "$app" "$name" "$c" \
                "$(awk '/^Requests\/sec:/ { print $2 }' "$out")" \
                "$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")" \
                "$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")" \
                "$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")" \
                "$(awk '/requests in/ { print $1 }' "$out")" \
                "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
                "$(awk -v a="$m0" -v b="$m1" 'BEGIN { print b - a }')" \
                "$(awk -v a="$s0" -v b="$s1" 'BEGIN { print b - a }')" \
                "$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" \
                "$(nproc)" >>"$RESULTS"
            tail -n1 "$RESULTS" | cut -f1-8 >&2
        done
        stop_server
    done
done

# One row per server and load, over the quiet rounds (other processes used <= MAX_OTHER % of the CPU; if
# none was quiet, the least disturbed one): the median round's req/s and latencies, the req/s range over
# those rounds, and the server's own CPU time per request (median).
"$BIN/python" - "$RESULTS" "$MAX_OTHER" <<'PY'
import statistics
import sys

rows: dict[tuple[int, int], list[dict]] = {}
for line in open(sys.argv[1]):
    rnd, i, app, name, c, rps, p50, p99, errs, nreq, wall, machine, server, wrk, ncpu = line.rstrip("\n").split("\t")
    other = float(machine) - float(server) - float(wrk)
    rows.setdefault((int(i), int(c)), []).append({
        "app": app, "name": name, "c": c, "rps": float(rps), "p50": p50, "p99": p99, "errs": int(errs),
        "other": 100 * other / (float(wall) * int(ncpu)), "cpu_us": 1e6 * float(server) / int(nreq),
    })
print("\n| App | Server | Conns | Req/s | p50 ms | p99 ms | Req/s range | Server CPU µs/req | Quiet rounds | Errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for key in sorted(rows):
    runs = rows[key]
    used = [r for r in runs if r["other"] <= float(sys.argv[2])] or [min(runs, key=lambda r: r["other"])]
    used.sort(key=lambda r: r["rps"])
    mid = used[(len(used) - 1) // 2]
    spread = f"{used[0]['rps']:.0f}–{used[-1]['rps']:.0f}"
    cpu = statistics.median(r["cpu_us"] for r in used)
    quiet = sum(r["other"] <= float(sys.argv[2]) for r in runs)
    print(f"| {mid['app']} | {mid['name']} | {mid['c']} | {mid['rps']:.0f} | {mid['p50']} | {mid['p99']} "
          f"| {spread} | {cpu:.0f} | {quiet}/{len(runs)} | {sum(r['errs'] for r in runs)} |")
PY
echo
echo "# raw wrk output and results.tsv: $WORK"
