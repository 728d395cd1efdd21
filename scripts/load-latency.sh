#!/usr/bin/env bash
# Delivery latency: SUBSCRIBERS in one room, PUBLISHERS sending RATE messages
# per second in total for DURATION seconds; prints p50/p99/p99.9/max.
. "$(dirname "$0")/load-common.sh"
build
start_linechat
load latency --subscribers "${SUBSCRIBERS:-1000}" --publishers "${PUBLISHERS:-1}" \
    --rate "${RATE:-50}" --bytes "${BYTES:-128}" --duration "${DURATION:-10}"
