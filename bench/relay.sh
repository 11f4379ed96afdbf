#!/usr/bin/env bash
# Relay load harness (issue 18; not part of CI: a few minutes and the whole machine). Starts a
# primary (`flagstaff serve`, temporary data dir, 127.0.0.1) with a project of 50 client-side
# flags, and a relay (`flagstaff relay --upstream`) following it; then, in the same run and in
# alternating rounds, measures with wrk at 64 connections on both:
#   * `GET /sdk/v1/bundle` with the current ETag in If-None-Match (304s: what SDKs poll with);
#   * `POST /ofrep/v1/evaluate/flags` for one context (client key);
# and the latency from a toggle on the primary (PATCH sent) to its event on an SDK stream of the
# relay and of the primary (bench/relay_latency.py). Every process it starts is stopped by PID.
#
# Usage: bash bench/relay.sh     (DURATION=10 ROUNDS=3 TOGGLES=30 PROFILE=release by default;
#                                 PROFILE=dev uses the debug build the tests use)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
TOGGLES=${TOGGLES:-30}
PROFILE=${PROFILE:-release}
PORT=${PORT:-18590}
RELAY_PORT=${RELAY_PORT:-18591}
CONNECTIONS=64

source bench/common.sh
install_wrk

if [ "$PROFILE" = dev ]; then
    cargo build --locked -p flagstaff --bin flagstaff
    BIN=target/debug
else
    cargo build --release --locked -p flagstaff --bin flagstaff
    BIN=target/release
fi

print_machine
echo "profile: $PROFILE"
start_flagstaff "$PORT"
API="http://127.0.0.1:$PORT/api/v1"

python3 - "$WORK/project.json" <<'PY'
import json, sys
flags = []
for i in range(50):
    flags.append({"key": f"flag-{i}", "type": "boolean", "client_side": True,
        "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "environments": {"production": {"enabled": True,
            "rules": [{"id": "r", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro", "team"]}],
                       "serve": {"variation": "on"}}],
            "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 30000},
                                                       {"variation": "off", "weight": 70000}]}}}}})
doc = {"flagstaff": 1, "project": {"key": "bench", "name": "Bench"},
       "environments": [{"key": "production", "name": "Production"}], "flags": flags}
json.dump(doc, open(sys.argv[1], "w"))
PY
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary @"$WORK/project.json" "$API/import" >/dev/null
key() {
    curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"kind\":\"$2\",\"name\":\"bench\"}" "$API/projects/bench/$1" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
SERVER_KEY=$(key environments/production/keys server)
CLIENT_KEY=$(key environments/production/keys client)
RELAY_KEY=$(key keys relay)

FLAGSTAFF_RELAY_KEY="$RELAY_KEY" $BIN/flagstaff relay --upstream "http://127.0.0.1:$PORT" \
    --bind "127.0.0.1:$RELAY_PORT" 2>"$WORK/relay.log" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$RELAY_PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

ETAG=$(curl -fsS -D - -o /dev/null -H "Authorization: Bearer $SERVER_KEY" \
    "http://127.0.0.1:$PORT/sdk/v1/bundle" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
RELAY_ETAG=$(curl -fsS -D - -o /dev/null -H "Authorization: Bearer $SERVER_KEY" \
    "http://127.0.0.1:$RELAY_PORT/sdk/v1/bundle" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
echo "bundle ETag: primary $ETAG, relay $RELAY_ETAG"
[ "$ETAG" = "$RELAY_ETAG" ] || { echo "the relay's ETag differs"; exit 1; }

cat >"$WORK/bundle.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $SERVER_KEY"
wrk.headers["If-None-Match"] = '$ETAG'
wrk.headers["Accept-Encoding"] = "gzip"
LUA
cat >"$WORK/ofrep.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"context":{"targetingKey":"user-42","plan":"free","country":"FR"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $CLIENT_KEY"
LUA

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# rps p99 non-2xx/3xx server-CPU-us/request
measure() {
    local pid=$1 url=$2 script=$3
    local out before after
    before=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c$CONNECTIONS -d"${DURATION}s" --latency -s "$script" "$url")
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

for path in bundle ofrep; do
    case $path in
        bundle) route=/sdk/v1/bundle; title="GET /sdk/v1/bundle (If-None-Match: 304)" ;;
        ofrep) route=/ofrep/v1/evaluate/flags; title="POST /ofrep/v1/evaluate/flags (client key, 50 flags)" ;;
    esac
    echo "== $title, wrk -t2 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds"
    wrk -t2 -c$CONNECTIONS -d2s -s "$WORK/$path.lua" "http://127.0.0.1:$PORT$route" >/dev/null
    wrk -t2 -c$CONNECTIONS -d2s -s "$WORK/$path.lua" "http://127.0.0.1:$RELAY_PORT$route" >/dev/null
    declare -A SUM=([primary]=0 [relay]=0)
    for round in $(seq "$ROUNDS"); do
        for name in primary relay; do
            case $name in
                primary) r=$(measure "$SERVER_PID" "http://127.0.0.1:$PORT$route" "$WORK/$path.lua") ;;
                relay) r=$(measure "$RELAY_PID" "http://127.0.0.1:$RELAY_PORT$route" "$WORK/$path.lua") ;;
            esac
            read -r rps p99 non2xx cpu <<<"$r"
            printf 'round %s  %-8s %10s req/s   p99 %8s   server CPU %6s us/request   non-2xx/3xx %s\n' \
                "$round" "$name" "$rps" "$p99" "$cpu" "$non2xx"
            SUM[$name]=$(awk -v a="${SUM[$name]}" -v b="$rps" 'BEGIN {print a + b}')
        done
    done
    awk -v p="${SUM[primary]}" -v r="${SUM[relay]}" -v n="$ROUNDS" \
        'BEGIN {printf "mean: primary %.0f req/s, relay %.0f req/s: relay/primary %.2f\n", p/n, r/n, r/p}'
done

echo "== a toggle on the primary to the event on an SDK stream, $TOGGLES toggles"
python3 bench/relay_latency.py --primary "http://127.0.0.1:$PORT" --relay "http://127.0.0.1:$RELAY_PORT" \
    --token "$TOKEN" --key "$SERVER_KEY" --project bench --flag flag-0 --toggles "$TOGGLES"
