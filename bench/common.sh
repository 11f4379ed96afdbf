# Shared by the load harnesses (bench/run.sh, bench/ofrep.sh); sourced, not run. Provides:
#   install_wrk                 wrk from Debian's package, unless it is there
#   WORK, PIDS                  a temporary directory, and the processes to stop (by PID) at exit
#   print_machine               the machine notes BENCHMARKS.md records
#   start_flagstaff PORT        a fresh data dir with an admin and a token ($DATA, $TOKEN), and
#                               `flagstaff serve` as it runs by default ($SERVER_PID), once healthy
# BIN (the release binaries' directory) must be set by the caller.

install_wrk() {
    if ! command -v wrk >/dev/null; then
        echo "installing wrk (Debian package)"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
    fi
}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

print_machine() {
    echo "== machine"
    grep -m1 "model name" /proc/cpuinfo | sed 's/.*: /cpu: /'
    echo "cores: $(nproc), memory: $(free -m | awk '/Mem:/ {print $2}') MiB, kernel: $(uname -r)"
    # wrk --version exits with 1: only its first line is wanted.
    echo "$(wrk --version 2>&1 | head -1)"
}

start_flagstaff() {
    local port=$1
    DATA="$WORK/data"
    printf 'bench-password-0123456789\n' |
        $BIN/flagstaff --data-dir "$DATA" --log warn user create --email bench@example.test --role admin --password-stdin
    TOKEN=$($BIN/flagstaff --data-dir "$DATA" --log warn token create --email bench@example.test --name bench)
    # The server as `flagstaff serve` runs by default (log level info, one worker per core).
    $BIN/flagstaff --data-dir "$DATA" --bind "127.0.0.1:$port" serve 2>"$WORK/server.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 100); do
        $BIN/flagstaff --bind "127.0.0.1:$port" --log error healthcheck 2>/dev/null && break
        sleep 0.1
    done
}
