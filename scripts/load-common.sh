# shellcheck shell=bash
# Sourced by load-*.sh: builds linechat and linechat-load in release, starts
# linechat on 127.0.0.1 with a fresh data dir and stops it again on exit.
# Env: PORT (17878), PIN (1: server on core 0, load tool on core 1),
# LINECHAT_COMMAND_RATE (0 = flood control off), LINECHAT_MAX_UNAUTH_PER_IP
# (100000), JSON (results file), TLS (1: the load tool connects over TLS to
# a second listener on PORT+1, with a certificate from tls-cert.sh), WS (1:
# over WebSocket to a listener on PORT+2, wss with TLS=1); other LINECHAT_*
# server settings pass through.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PORT:-17878}
PIN=${PIN:-1}
LOAD="$REPO/target/release/linechat-load"
SERVER_PID=

# Replaces the current (sub)shell with "$@" on core $1 when pinning is on and
# possible; call it backgrounded or in ( ) so "$!" is the program's own pid.
on_core() {
    local core=$1
    shift
    if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        exec taskset -c "$core" "$@"
    fi
    exec "$@"
}

# Waits up to 10 s for 127.0.0.1:$1 to accept, failing early if $2 died.
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
            echo "server exited before listening on port $1" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "nothing listening on 127.0.0.1:$1" >&2
    return 1
}

build() {
    (cd "$REPO" && cargo build --release --bins)
}

stop_linechat() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    if [ -n "${DATA_DIR:-}" ]; then
        rm -rf "$DATA_DIR"
    fi
}

start_linechat() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "port $PORT is already in use; set PORT" >&2
        return 1
    fi
    # Thousands of sessions need descriptors on both ends.
    ulimit -n "$(ulimit -Hn)"
    DATA_DIR=$(mktemp -d)
    trap stop_linechat EXIT
    # Flood control off and all clients come from 127.0.0.1, so lift the
    # per-address limit on connections that are not logged in yet.
    TLS_SERVER_FLAGS=()
    if [ "${TLS:-0}" = 1 ]; then
        bash "$REPO/scripts/tls-cert.sh" "$DATA_DIR/tls" >/dev/null
        TLS_SERVER_FLAGS=(--tls-listen "127.0.0.1:$((PORT + 1))"
            --tls-cert "$DATA_DIR/tls/cert.pem" --tls-key "$DATA_DIR/tls/key.pem")
    fi
    if [ "${WS:-0}" = 1 ]; then
        local ws_flag=--ws-listen
        [ "${TLS:-0}" = 1 ] && ws_flag=--wss-listen
        TLS_SERVER_FLAGS+=("$ws_flag" "127.0.0.1:$((PORT + 2))")
    fi
    on_core 0 "$REPO/target/release/linechat" --listen "127.0.0.1:$PORT" \
        --data-dir "$DATA_DIR" --command-rate "${LINECHAT_COMMAND_RATE:-0}" \
        --max-unauth-per-ip "${LINECHAT_MAX_UNAUTH_PER_IP:-100000}" \
        "${TLS_SERVER_FLAGS[@]}" >"$DATA_DIR/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$PORT" "$SERVER_PID"
}

# Runs the load tool against the server started above.
load() {
    local target=(--addr "127.0.0.1:$PORT")
    if [ "${TLS:-0}" = 1 ]; then
        target=(--addr "127.0.0.1:$((PORT + 1))" --tls-ca "$DATA_DIR/tls/cert.pem"
            --stats-addr "127.0.0.1:$PORT")
    fi
    if [ "${WS:-0}" = 1 ]; then
        target[1]="127.0.0.1:$((PORT + 2))"
        target+=(--proto ws)
        [ "${TLS:-0}" = 1 ] || target+=(--stats-addr "127.0.0.1:$PORT")
    fi
    (on_core 1 "$LOAD" "$@" "${target[@]}" --server-pid "$SERVER_PID" \
        ${JSON:+--json "$JSON"})
}
