#!/usr/bin/env bash
# Node-wide changes per second through the change log: a cluster of three
# nodes (PostgreSQL, Redis, all on loopback) and scripts/changes.py, which
# has CLIENTS clients (30) REACT and UNREACT in rooms of their own, WINDOW
# (8) unanswered each, for DURATION seconds (5): all on node 0, then spread
# over the three nodes. Prints both rates and their ratio.
#
# Env: CLIENTS, WINDOW, DURATION, BASE_PORT (18060), DIR
# (/tmp/linechat-load-changes). Stops everything it started, by pid.
. "$(dirname "$0")/cluster-common.sh"
BASE_PORT=${BASE_PORT:-18060}
DIR=${DIR:-/tmp/linechat-load-changes}
cluster_for_load "$DIR" "$BASE_PORT"
NODE_PORTS="$BASE_PORT,$((BASE_PORT + 1)),$((BASE_PORT + 2))" python3 "$REPO/scripts/changes.py"
