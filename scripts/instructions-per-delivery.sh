#!/usr/bin/env bash
# User-space instructions the server spends per delivered message, counted by
# valgrind's callgrind (repeatable whatever else the machine is doing, unlike
# timings). Runs the latency scenario (SUBSCRIBERS in one room, RATE msg/s)
# twice under callgrind, SHORT and LONG seconds, and divides the difference
# in instructions by the difference in deliveries, so startup, registrations
# and shutdown cancel out. Every thread of the server counts (the loop, the
# storage thread, the workers).
#
# Usage: scripts/instructions-per-delivery.sh [LINECHAT_BINARY ...]
#   (default: this checkout's target/release/linechat; give two binaries to
#   compare a change, e.g. an older build first)
# Env: SUBSCRIBERS (200), RATE (20), SHORT (4), LONG (12), PORT (17950),
# WIRE (tcp; ws or tls: the clients use that listener, on PORT+1, and STATS
# goes over the plain one).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SUBSCRIBERS=${SUBSCRIBERS:-200}
RATE=${RATE:-20}
SHORT=${SHORT:-4}
LONG=${LONG:-12}
PORT=${PORT:-17950}
WIRE=${WIRE:-tcp}
LOAD="$REPO/target/release/linechat-load"

command -v valgrind >/dev/null || {
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind
}
(cd "$REPO" && cargo build --release --bins)
[ $# -gt 0 ] || set -- "$REPO/target/release/linechat"

# Prints "<instructions> <deliveries>" for one run of $2 seconds of binary $1.
run() {
    local bin=$1 secs=$2 dir pid wire_server=() wire_load=()
    dir=$(mktemp -d)
    case $WIRE in
    ws)
        wire_server=(--ws-listen "127.0.0.1:$((PORT + 1))")
        wire_load=(--proto ws --addr "127.0.0.1:$((PORT + 1))" --stats-addr "127.0.0.1:$PORT")
        ;;
    tls)
        bash "$REPO/scripts/tls-cert.sh" "$dir/tls" >/dev/null
        wire_server=(--tls-listen "127.0.0.1:$((PORT + 1))" --tls-cert "$dir/tls/cert.pem"
            --tls-key "$dir/tls/key.pem")
        wire_load=(--proto tls --addr "127.0.0.1:$((PORT + 1))" --tls-ca "$dir/tls/cert.pem"
            --stats-addr "127.0.0.1:$PORT")
        ;;
    *) wire_load=(--addr "127.0.0.1:$PORT") ;;
    esac
    # Cheap argon2: registrations are not what is measured.
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" \
        --listen "127.0.0.1:$PORT" --data-dir "$dir/data" --command-rate 0 \
        --max-unauth-per-ip 100000 --argon2-memory-kib 64 --argon2-iterations 1 \
        "${wire_server[@]}" >"$dir/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    "$LOAD" latency "${wire_load[@]}" --subscribers "$SUBSCRIBERS" \
        --rate "$RATE" --duration "$secs" --warmup 1 --json "$dir/report.json" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" || true
    local ir deliveries
    ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/cg.out")
    deliveries=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); m=m.get('metrics', m); print(int(m['server.deliveries_out']))" "$dir/report.json")
    rm -rf "$dir"
    echo "$ir $deliveries"
}

for bin in "$@"; do
    read -r ir_short del_short < <(run "$bin" "$SHORT")
    read -r ir_long del_long < <(run "$bin" "$LONG")
    awk -v b="$bin" -v i1="$ir_short" -v i2="$ir_long" -v d1="$del_short" -v d2="$del_long" \
        'BEGIN { printf "%s: %.0f instructions per delivery (%d deliveries apart)\n", b, (i2 - i1) / (d2 - d1), d2 - d1 }'
done
