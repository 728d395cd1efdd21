#!/usr/bin/env bash
# Idle sessions: CONNECTIONS logged-in sessions in rooms of ROOM_SIZE, held for
# HOLD seconds; prints login rate and server memory (VmRSS) per session.
. "$(dirname "$0")/load-common.sh"
build
start_linechat
load connections --connections "${CONNECTIONS:-10000}" --room-size "${ROOM_SIZE:-10}" \
    --hold "${HOLD:-5}"
