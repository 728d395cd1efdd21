#!/usr/bin/env bash
# A node killed under load: a cluster of three nodes (PostgreSQL, Redis, all
# on loopback), SUBSCRIBERS clients in one room spread over the nodes, a
# publisher on node 0 and one on node 1 at RATE messages a second each; node
# 0 is killed with SIGKILL after WARMUP seconds, its clients reconnect to
# nodes 1 and 2 and LOGIN (the implied SYNC), and publishing goes on for
# AFTER seconds. scripts/failover.py drives the clients and prints what was
# acknowledged, lost (must be 0), gaps (must be 0), duplicates and the
# reconnect-to-synced time; this exits non-zero if anything was lost.
# FAULT=redis kills Redis instead, for DOWN seconds (2), and reports how long
# after it is back every subscriber has every message acknowledged by then
# (the nodes' cross-node delivery catching up from PostgreSQL). FAULT=pg
# shuts PostgreSQL down as a crash would (immediate: recovery from its WAL
# on restart) for DOWN seconds: SAYs meanwhile are refused, not
# acknowledged, and it reports the refusals by ERR code and the same time.
# FAULT=stop stops node 0 (SIGSTOP) for DOWN seconds (12: past the presence
# TTL) and continues it: its clients wait, and the time from SIGCONT until
# every subscriber has every message acknowledged by then is reported.
#
# FRONT=1 puts HAProxy in front (scripts/cluster-common.sh's cluster_front,
# on BASE_PORT+30): the moved clients reconnect through it, as users would.
#
# Env: FAULT (node), FRONT, SUBSCRIBERS (300), RATE (50), WARMUP (3), DOWN (2; 12 for stop),
# AFTER (3), BASE_PORT (18000), DIR (/tmp/linechat-load-failover). Stops
# everything it started, by pid.
. "$(dirname "$0")/cluster-common.sh"
BASE_PORT=${BASE_PORT:-18000}
DIR=${DIR:-/tmp/linechat-load-failover}
cluster_for_load "$DIR" "$BASE_PORT"
front=
if [ -n "${FRONT:-}" ]; then
    front=$((BASE_PORT + 30))
    cluster_front "$front" "$BASE_PORT"
fi
FAULT=${FAULT:-node}
case $FAULT in
node | stop) victim=${NODE_PIDS[0]} ;;
redis) victim=$REDIS_PID ;;
pg) victim=$(head -n 1 "$DIR/pg/postmaster.pid") ;;
*) echo "FAULT is node, redis, pg or stop" >&2; exit 2 ;;
esac
NODE_PORTS="$BASE_PORT,$((BASE_PORT + 1)),$((BASE_PORT + 2))" VICTIM_PID=$victim \
    REDIS_PORT=$REDIS_PORT PG_SCRIPT="$REPO/scripts/pg.sh" PG_DIR="$DIR/pg" \
    PG_PORT=$((BASE_PORT + 20)) FRONT_PORT=$front FAULT=$FAULT python3 "$REPO/scripts/failover.py"
