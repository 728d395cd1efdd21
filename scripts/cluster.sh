#!/usr/bin/env bash
# A linechat cluster on loopback: PostgreSQL (scripts/pg.sh, run as the
# postgres user), Redis and three nodes sharing them, in the foreground
# until Ctrl-C, which stops everything it started, by pid.
#
#   scripts/cluster.sh [DIR]     state under DIR (default /tmp/linechat-cluster)
#
# Env: BASE_PORT (17900): nodes listen on BASE_PORT, +1, +2; Redis on
# BASE_PORT+10; PostgreSQL on BASE_PORT+20. Other LINECHAT_* settings pass
# through to the nodes. Installs Debian's redis-server (and, through
# pg.sh, postgresql) when missing. Builds linechat in release first.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-/tmp/linechat-cluster}
BASE_PORT=${BASE_PORT:-17900}
REDIS_PORT=$((BASE_PORT + 10))
PG_PORT=$((BASE_PORT + 20))
PIDS=()
REDIS_PID=

stop() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    "$REPO/scripts/pg.sh" stop "$DIR/pg" || true
    echo "stopped" >&2
}
trap stop EXIT

if ! command -v redis-server >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server >&2
fi
(cd "$REPO" && cargo build --release --quiet --bin linechat)

mkdir -p "$DIR"
chmod 755 "$DIR"
PG_URL=$("$REPO/scripts/pg.sh" start "$DIR/pg" "$PG_PORT")
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DIR" >"$DIR/redis.log" 2>&1 &
REDIS_PID=$!

# Attachments live in files that every node must read: one folder here.
mkdir -p "$DIR/blobs"
for i in 0 1 2; do
    port=$((BASE_PORT + i))
    mkdir -p "$DIR/node$i"
    "$REPO/target/release/linechat" \
        --listen "127.0.0.1:$port" \
        --data-dir "$DIR/node$i" \
        --blob-dir "$DIR/blobs" \
        --store "$PG_URL" \
        --bus "redis://127.0.0.1:$REDIS_PORT" \
        >"$DIR/node$i.out" 2>"$DIR/node$i.log" &
    PIDS+=("$!")
done
for i in 0 1 2; do
    port=$((BASE_PORT + i))
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "${PIDS[$i]}" 2>/dev/null || {
            echo "node $i exited; see $DIR/node$i.log" >&2
            exit 1
        }
        sleep 0.1
    done
done

echo "PostgreSQL: $PG_URL"
echo "Redis:      redis://127.0.0.1:$REDIS_PORT"
echo "Nodes (connect to any, e.g. nc -N 127.0.0.1 $BASE_PORT):"
for i in 0 1 2; do
    echo "  127.0.0.1:$((BASE_PORT + i))  pid ${PIDS[$i]}  log $DIR/node$i.log"
done
echo "Ctrl-C stops everything."
wait "${PIDS[@]}"
