#!/usr/bin/env bash
# Fan-out throughput: SUBSCRIBERS in one room, PUBLISHERS sending BYTES-byte
# messages as fast as linechat takes them, each at most WINDOW messages ahead
# of the slowest subscriber, for DURATION seconds.
. "$(dirname "$0")/load-common.sh"
build
start_linechat
load fanout --subscribers "${SUBSCRIBERS:-1000}" --publishers "${PUBLISHERS:-1}" \
    --bytes "${BYTES:-128}" --window "${WINDOW:-1024}" --duration "${DURATION:-10}"
