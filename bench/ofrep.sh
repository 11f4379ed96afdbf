#!/usr/bin/env bash
# Load harness for OFREP bulk evaluation (not part of CI: about a minute and the whole machine).
# Builds release binaries, starts Flagstaff on a temporary data dir on 127.0.0.1 with a project of
# 50 client-side flags (plus 20 server-only ones), then measures with wrk at 64 connections
# `POST /ofrep/v1/evaluate/flags` for one context (client key), against a bare actix-web handler
# that parses the same JSON body and answers a body of the same size, in the same run.
# Every process it starts is stopped by PID when it ends. Figures go in BENCHMARKS.md.
#
# Usage: bash bench/ofrep.sh            (DURATION=10 ROUNDS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18490}
BARE_PORT=${BARE_PORT:-18491}
CONNECTIONS=64

source bench/common.sh
install_wrk

cargo build --release --locked -p flagstaff --bin flagstaff
cargo build --release --locked -p flagstaff-bench --bin ofrep-bench
BIN=target/release

print_machine
start_flagstaff "$PORT"

$BIN/ofrep-bench setup --url "http://127.0.0.1:$PORT" --token "$TOKEN" --out "$WORK/ofrep"
KEY=$(cat "$WORK/ofrep/key")

$BIN/ofrep-bench bare --bind "127.0.0.1:$BARE_PORT" --dir "$WORK/ofrep" &
BARE_PID=$!
PIDS+=("$BARE_PID")
sleep 0.5

cat >"$WORK/post.lua" <<EOF
local f = io.open("$WORK/ofrep/request.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
EOF

# wrk prints "Requests/sec: N", "N requests in", and with --latency "99% Xms|us|s". The server's
# own CPU time (user + system, from /proc) per request is printed too: on a machine shared with
# wrk and with others, it moves less than the rate does.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() {
    local pid=$1 port=$2
    local out before after
    before=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c$CONNECTIONS -d"${DURATION}s" --latency -s "$WORK/post.lua" \
        "http://127.0.0.1:$port/ofrep/v1/evaluate/flags")
    after=$(cpu_ticks "$pid")
    local rps p99 non2xx requests cpu
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v t=$((after - before)) -v n="$requests" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%.2f", t * 1e6 / hz / n}')
    echo "$rps $p99 ${non2xx:-0} $cpu"
}

echo "== POST /ofrep/v1/evaluate/flags, wrk -t2 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds"
wrk -t2 -c$CONNECTIONS -d2s -s "$WORK/post.lua" "http://127.0.0.1:$PORT/ofrep/v1/evaluate/flags" >/dev/null
wrk -t2 -c$CONNECTIONS -d2s -s "$WORK/post.lua" "http://127.0.0.1:$BARE_PORT/ofrep/v1/evaluate/flags" >/dev/null
declare -A SUM CPU
SUM[flagstaff]=0; SUM[bare]=0; CPU[flagstaff]=0; CPU[bare]=0
for round in $(seq "$ROUNDS"); do
    for name in flagstaff bare; do
        case $name in
            flagstaff) r=$(measure "$SERVER_PID" "$PORT") ;;
            bare) r=$(measure "$BARE_PID" "$BARE_PORT") ;;
        esac
        read -r rps p99 non2xx cpu <<<"$r"
        printf 'round %s  %-10s %10s req/s   p99 %8s   server CPU %6s us/request   non-2xx/3xx %s\n' \
            "$round" "$name" "$rps" "$p99" "$cpu" "$non2xx"
        SUM[$name]=$(awk -v a="${SUM[$name]}" -v b="$rps" 'BEGIN {print a + b}')
        CPU[$name]=$(awk -v a="${CPU[$name]}" -v b="$cpu" 'BEGIN {print a + b}')
    done
done
awk -v f="${SUM[flagstaff]}" -v b="${SUM[bare]}" -v n="$ROUNDS" \
    'BEGIN {printf "mean: flagstaff %.0f req/s, bare %.0f req/s: %.1f%% of bare\n", f/n, b/n, 100*f/b}'
awk -v f="${CPU[flagstaff]}" -v b="${CPU[bare]}" -v n="$ROUNDS" \
    'BEGIN {printf "mean server CPU per request: flagstaff %.2f us, bare %.2f us\n", f/n, b/n}'
