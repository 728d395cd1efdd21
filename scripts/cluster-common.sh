# shellcheck shell=bash
# Sourced by cluster.sh, load-cluster.sh and load-failover.sh: a private
# PostgreSQL (scripts/pg.sh, run as the postgres user), Redis and three linechat nodes
# sharing them, on loopback: nodes on BASE_PORT, +1, +2 (their WebSocket
# listeners, for the browser page, on BASE_PORT+40, +41, +42), Redis on
# BASE_PORT+10, PostgreSQL on BASE_PORT+20, all state under DIR.
# Each script has a BASE_PORT of its own (cluster.sh 17900, load-cluster.sh
# 17950, load-failover.sh 18000, load-changes.sh 18060) and uses up to
# BASE_PORT+42, so they can run side by side.
# cluster_start DIR BASE_PORT [node flags...] starts them (building linechat
# in release first) and sets PG_URL, REDIS_PORT and NODE_PIDS; cluster_stop
# (run on exit) stops everything it started, by pid.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_PIDS=()
REDIS_PID=
FRONT_PID=
CLUSTER_DIR=

cluster_stop() {
    if [ -n "$FRONT_PID" ]; then
        kill -TERM "$FRONT_PID" 2>/dev/null || true
        wait "$FRONT_PID" 2>/dev/null || true
    fi
    for pid in "${NODE_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${NODE_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    if [ -n "$CLUSTER_DIR" ]; then
        "$REPO/scripts/pg.sh" stop "$CLUSTER_DIR/pg" || true
    fi
}

cluster_start() {
    CLUSTER_DIR=$1
    local base=$2
    shift 2
    if ! command -v redis-server >/dev/null; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server >&2
    fi
    (cd "$REPO" && cargo build --release --quiet --bin linechat --bin linechat-load)
    mkdir -p "$CLUSTER_DIR"
    chmod 755 "$CLUSTER_DIR"
    PG_URL=$("$REPO/scripts/pg.sh" start "$CLUSTER_DIR/pg" "$((base + 20))")
    REDIS_PORT=$((base + 10))
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$CLUSTER_DIR" >"$CLUSTER_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    # Attachments live in files that every node must read: one folder here.
    local i port
    for i in 0 1 2; do
        "$REPO/target/release/linechat" --listen "127.0.0.1:$((base + i))" \
            --ws-listen "127.0.0.1:$((base + 40 + i))" --data-dir "$CLUSTER_DIR/node$i" --blob-dir "$CLUSTER_DIR/blobs" \
            --store "$PG_URL" --bus "redis://127.0.0.1:$REDIS_PORT" "$@" \
            >/dev/null 2>"$CLUSTER_DIR/node$i.log" &
        NODE_PIDS+=("$!")
    done
    for i in 0 1 2; do
        port=$((base + i))
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || {
                echo "node $i exited; see $CLUSTER_DIR/node$i.log" >&2
                return 1
            }
            sleep 0.1
        done
    done
}

# cluster_for_load DIR BASE_PORT: cluster_start in a fresh DIR with what a
# load run needs (no flood control, no cap on unauthenticated connections
# per address, cheap password hashing); on exit everything is stopped and
# DIR removed.
cluster_for_load() {
    local dir=$1
    # shellcheck disable=SC2064 # DIR is fixed now, on purpose.
    trap "cluster_stop; rm -rf '$dir'" EXIT
    rm -rf "$dir"
    cluster_start "$dir" "$2" --command-rate 0 --max-unauth-per-ip 100000 \
        --argon2-memory-kib 64 --argon2-iterations 1
}

# cluster_front PORT BASE_PORT: HAProxy on 127.0.0.1:PORT in TCP mode in
# front of the three nodes, and on PORT+1 in front of their WebSocket
# listeners (the browser page and its sessions; installing Debian's haproxy
# when missing): each new client
# goes to the node with the fewest connections among those that accept
# one (a node that stops accepting is skipped within a few seconds, and a
# connection it refuses meanwhile is sent to another node).
# Sets FRONT_PID; cluster_stop stops it.
cluster_front() {
    local port=$1 base=$2 i
    if ! command -v haproxy >/dev/null; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q haproxy >&2
    fi
    {
        # No maxconn: HAProxy derives it from the descriptor limit.
        echo "defaults"
        echo "    mode tcp"
        echo "    option tcpka"
        echo "    timeout connect 2s"
        # A connect to a node that just died (not yet marked down by the
        # check) is tried again on another node, not handed to the client.
        echo "    retries 2"
        echo "    option redispatch 1"
        # Chat sessions are long and may be quiet: the nodes' own idle
        # timeout and PING decide when one is dead, not the balancer.
        echo "    timeout client 24h"
        echo "    timeout server 24h"
        echo "frontend linechat"
        echo "    bind 127.0.0.1:$port"
        echo "    default_backend nodes"
        echo "backend nodes"
        echo "    balance leastconn"
        for i in 0 1 2; do
            echo "    server node$i 127.0.0.1:$((base + i)) check inter 1s fall 2 rise 1"
        done
        # WebSocket is TCP after its upgrade: the page, /healthz and each
        # browser session may each reach another node, and any will do.
        echo "frontend browser"
        echo "    bind 127.0.0.1:$((port + 1))"
        echo "    default_backend web"
        echo "backend web"
        echo "    balance leastconn"
        for i in 0 1 2; do
            echo "    server web$i 127.0.0.1:$((base + 40 + i)) check inter 1s fall 2 rise 1"
        done
    } >"$CLUSTER_DIR/haproxy.cfg"
    haproxy -db -f "$CLUSTER_DIR/haproxy.cfg" >"$CLUSTER_DIR/haproxy.log" 2>&1 &
    FRONT_PID=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$FRONT_PID" 2>/dev/null || {
            echo "haproxy exited; see $CLUSTER_DIR/haproxy.log" >&2
            return 1
        }
        sleep 0.1
    done
}
