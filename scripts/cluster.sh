#!/usr/bin/env bash
# A linechat cluster on loopback: PostgreSQL (scripts/pg.sh, run as the
# postgres user), Redis and three nodes sharing them, in the foreground
# until Ctrl-C, which stops everything it started, by pid.
#
#   scripts/cluster.sh [DIR]     state under DIR (default /tmp/linechat-cluster)
#
# Env: BASE_PORT (17900): nodes listen on BASE_PORT, +1, +2; Redis on
# BASE_PORT+10; PostgreSQL on BASE_PORT+20; the HAProxy front (the address
# to give clients) on BASE_PORT+30, and for browsers (the page and its
# WebSocket sessions) on BASE_PORT+31; the nodes' own WebSocket listeners
# on BASE_PORT+40, +41, +42. Other LINECHAT_* settings pass through
# to the nodes. Installs Debian's redis-server, haproxy (and, through
# pg.sh, postgresql) when missing. Builds linechat in release first.
. "$(dirname "$0")/cluster-common.sh"
DIR=${1:-/tmp/linechat-cluster}
BASE_PORT=${BASE_PORT:-17900}
trap cluster_stop EXIT
cluster_start "$DIR" "$BASE_PORT"
cluster_front "$((BASE_PORT + 30))" "$BASE_PORT"

echo "PostgreSQL: $PG_URL"
echo "Redis:      redis://127.0.0.1:$REDIS_PORT"
echo "Front:      nc -N 127.0.0.1 $((BASE_PORT + 30))  (HAProxy, pid $FRONT_PID: each client to the least busy node)"
echo "Browser:    http://127.0.0.1:$((BASE_PORT + 31))/  (the same front, for the page and WebSocket)"
echo "Nodes (or connect to one directly, e.g. nc -N 127.0.0.1 $BASE_PORT):"
for i in 0 1 2; do
    echo "  127.0.0.1:$((BASE_PORT + i))  ws 127.0.0.1:$((BASE_PORT + 40 + i))  pid ${NODE_PIDS[$i]}  log $DIR/node$i.log"
done
echo "Ctrl-C stops everything."
wait "${NODE_PIDS[@]}"
