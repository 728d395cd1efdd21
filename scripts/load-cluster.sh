#!/usr/bin/env bash
# Cross-node delivery latency: a cluster of three nodes (PostgreSQL, Redis,
# all on loopback) and the latency scenario twice in one run: SUBSCRIBERS
# in one room all on node 0 (one node's delivery), then spread over the
# three nodes (cross-node delivery through Redis), RATE messages per second
# for DURATION seconds each. Prints both p99s and their ratio, and the
# PUBLISH commands Redis ran during the spread run (INFO commandstats)
# beside the messages published.
#
# Env: SUBSCRIBERS (1000), RATE (50), DURATION (10), BASE_PORT (17950),
# DIR (/tmp/linechat-load-cluster). Stops everything it started, by pid.
. "$(dirname "$0")/cluster-common.sh"
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATE=${RATE:-50}
DURATION=${DURATION:-10}
BASE_PORT=${BASE_PORT:-17950}
DIR=${DIR:-/tmp/linechat-load-cluster}
cluster_for_load "$DIR" "$BASE_PORT"

# Sends lines to a node and prints what it answers within a second.
talk() {
    local port=$1
    shift
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf '%s\n' "$@" >&3
    timeout 1 cat <&3 || true
    exec 3<&-
}

# The spread run's room is founded on node 0 and known to the other nodes
# (through the bus) before their clients JOIN it.
founded() {
    local tag=$1
    talk "$BASE_PORT" "REGISTER owner$tag password1" "JOIN #r${tag}_0" "QUIT" >/dev/null
    for i in 1 2; do
        for _ in $(seq 100); do
            talk "$((BASE_PORT + i))" "LOGIN owner$tag password1" "WHO #r${tag}_0" "QUIT" |
                grep -q "^OK WHO" && break
            sleep 0.1
        done
    done
}

publishes() {
    redis-cli -p "$REDIS_PORT" info commandstats |
        sed -n 's/^cmdstat_publish:calls=\([0-9]*\).*/\1/p' | head -n 1
}

run() {
    local tag=$1
    shift
    "$REPO/target/release/linechat-load" latency --addr "127.0.0.1:$BASE_PORT" "$@" \
        --subscribers "$SUBSCRIBERS" --rate "$RATE" --duration "$DURATION" \
        --tag "$tag" --json "$DIR/$tag.json" >"$DIR/$tag.out"
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["metrics"]; print(m["latency_p99_us"], m["published"])' "$DIR/$tag.json"
}

read -r one_p99 _ < <(run one)
founded spread
before=$(publishes)
read -r spread_p99 published < <(run spread --also-addr "127.0.0.1:$((BASE_PORT + 1))" \
    --also-addr "127.0.0.1:$((BASE_PORT + 2))")
after=$(publishes)
echo "subscribers $SUBSCRIBERS, $RATE msg/s, ${DURATION}s each"
echo "one node:          p99 ${one_p99} us"
echo "three nodes:       p99 ${spread_p99} us (ratio $(python3 -c "print(round($spread_p99 / $one_p99, 2))"))"
# Each client's REGISTER and JOIN are node-wide facts: one PUBLISH each.
setup=$((2 * (SUBSCRIBERS + 1)))
echo "Redis PUBLISH calls during the spread run: $((after - before)):" \
    "$setup for the clients' REGISTER and JOIN, $((after - before - setup)) for $published messages published"
