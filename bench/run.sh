#!/usr/bin/env bash
# Load harness for the SDK delivery path (not part of CI: it takes a few minutes and the whole
# machine). Builds release binaries, starts Flagstaff on a temporary data dir on 127.0.0.1,
# then measures:
#   1. GET /sdk/v1/bundle (100 flags) as 304 and as 200+gzip with wrk at 64 connections, against
#      a bare actix-web handler serving the same bytes, built and measured in the same run (and
#      Flagstaff's SDK routes alone, without the app-wide middleware);
#   2. STREAMS concurrent SSE streams (default 10,000, from a separate client process): the
#      server's memory per stream, and the time from an admin toggle's API answer to each
#      stream receiving the event.
# Every process it starts is stopped by PID when it ends. Figures go in BENCHMARKS.md.
#
# Usage: bash bench/run.sh            (STREAMS=10000 DURATION=10 ROUNDS=3 TOGGLES=10 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

STREAMS=${STREAMS:-10000}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
TOGGLES=${TOGGLES:-10}
PORT=${PORT:-18480}
BARE_PORT=${BARE_PORT:-18481}
HANDLER_PORT=${HANDLER_PORT:-18482}
CONNECTIONS=64

source bench/common.sh
install_wrk
# Client and server each hold one descriptor per stream.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((STREAMS + 200)) ]; then
    echo "the open-files limit ($(ulimit -n)) is too low for $STREAMS streams" >&2
    exit 1
fi

cargo build --release --locked -p flagstaff -p flagstaff-bench
BIN=target/release

print_machine
start_flagstaff "$PORT"

$BIN/flagstaff-bench setup --url "http://127.0.0.1:$PORT" --token "$TOKEN" --flags 100 --out "$WORK/bundle"
KEY=$(cat "$WORK/bundle/key")
ETAG=$(cat "$WORK/bundle/etag")

$BIN/flagstaff-bench bare --bind "127.0.0.1:$BARE_PORT" --dir "$WORK/bundle" &
BARE_PID=$!
PIDS+=("$BARE_PID")
# Flagstaff's SDK routes alone (same handler code, none of the app-wide middleware), to tell
# the handler's cost from the request logging, request ids and metrics around every route.
$BIN/flagstaff-bench handler --bind "127.0.0.1:$HANDLER_PORT" --data-dir "$DATA" &
HANDLER_PID=$!
PIDS+=("$HANDLER_PID")
sleep 0.5

# wrk prints "Requests/sec: N" and, with --latency, "99% Xms|us|s".
measure() {
    local port=$1; shift
    local out
    out=$(wrk -t2 -c$CONNECTIONS -d"${DURATION}s" --latency -H "Authorization: Bearer $KEY" "$@" \
        "http://127.0.0.1:$port/sdk/v1/bundle")
    local rps p99 non2xx
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx/ {print $5}' <<<"$out")
    echo "$rps $p99 ${non2xx:-0}"
}

echo "== GET /sdk/v1/bundle, wrk -t2 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds"
NAMES="flagstaff-304 handler-304 bare-304 flagstaff-gzip handler-gzip bare-gzip"
declare -A SUM
for name in $NAMES; do SUM[$name]=0; done
# Warm the servers up.
for port in "$PORT" "$HANDLER_PORT" "$BARE_PORT"; do
    wrk -t2 -c$CONNECTIONS -d2s -H "Authorization: Bearer $KEY" -H "If-None-Match: $ETAG" \
        "http://127.0.0.1:$port/sdk/v1/bundle" >/dev/null
done
for round in $(seq "$ROUNDS"); do
    for name in $NAMES; do
        case $name in
            flagstaff-304) r=$(measure "$PORT" -H "If-None-Match: $ETAG") ;;
            handler-304) r=$(measure "$HANDLER_PORT" -H "If-None-Match: $ETAG") ;;
            bare-304) r=$(measure "$BARE_PORT" -H "If-None-Match: $ETAG") ;;
            flagstaff-gzip) r=$(measure "$PORT" -H "Accept-Encoding: gzip") ;;
            handler-gzip) r=$(measure "$HANDLER_PORT" -H "Accept-Encoding: gzip") ;;
            bare-gzip) r=$(measure "$BARE_PORT" -H "Accept-Encoding: gzip") ;;
        esac
        read -r rps p99 non2xx <<<"$r"
        printf 'round %s  %-15s %10s req/s   p99 %8s   non-2xx/3xx %s\n' "$round" "$name" "$rps" "$p99" "$non2xx"
        SUM[$name]=$(awk -v a="${SUM[$name]}" -v b="$rps" 'BEGIN {print a + b}')
    done
done
for kind in 304 gzip; do
    awk -v f="${SUM[flagstaff-$kind]}" -v h="${SUM[handler-$kind]}" -v b="${SUM[bare-$kind]}" -v n="$ROUNDS" -v k="$kind" \
        'BEGIN {printf "mean %-5s bare %.0f req/s; flagstaff %.0f req/s = %.1f%% of bare; SDK routes alone %.0f req/s = %.1f%% of bare\n", k, b/n, f/n, 100*f/b, h/n, 100*h/b}'
done
kill "$BARE_PID" "$HANDLER_PID"; wait "$BARE_PID" "$HANDLER_PID" 2>/dev/null || true

echo "== $STREAMS SSE streams, $TOGGLES toggles"
$BIN/flagstaff-bench streams --addr "127.0.0.1:$PORT" --key "$KEY" --token "$TOKEN" \
    --connections "$STREAMS" --toggles "$TOGGLES" --server-pid "$SERVER_PID"
