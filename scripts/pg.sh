#!/usr/bin/env bash
# A private PostgreSQL cluster for tests and local clusters, run as the
# `postgres` user (never as root), on a loopback port, with trust auth for
# 127.0.0.1 only.
#
#   scripts/pg.sh start DIR PORT   initdb DIR if empty, start, create role and
#                                  database `linechat`; prints the URL
#   scripts/pg.sh stop DIR         stop the server started in DIR (by its pid)
#
# Installs Debian's `postgresql` when no server binaries are found.
set -euo pipefail

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$dir" ]; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$dir"
}

# Runs a command as the postgres user when we are root, as ourselves otherwise.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=$1 port=$2 bin
    bin=$(pg_bin)
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust --no-sync -E UTF8 >"$dir.initdb.log"
        {
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir'"
            # Tests create a database each, in parallel.
            echo "max_connections = 200"
            echo "fsync = on"
        } >>"$dir/postgresql.conf"
        echo "host all all 127.0.0.1/32 trust" >"$dir/pg_hba.conf"
        echo "local all all trust" >>"$dir/pg_hba.conf"
    fi
    as_pg "$bin/pg_ctl" -D "$dir" -o "-p $port" -l "$dir/server.log" -w -t 30 start >&2
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 <<'SQL' >&2
SELECT 'CREATE ROLE linechat LOGIN CREATEDB'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'linechat') \gexec
SELECT 'CREATE DATABASE linechat OWNER linechat'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'linechat') \gexec
SQL
    echo "postgres://linechat@127.0.0.1:$port/linechat"
}

stop() {
    local dir=$1 pid
    [ -f "$dir/postmaster.pid" ] || return 0
    pid=$(head -n 1 "$dir/postmaster.pid")
    # SIGINT is PostgreSQL's fast shutdown; wait (bounded) for it to exit.
    kill -INT "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "postgres $pid did not stop in 10 s" >&2
    return 1
}

case "${1:-}" in
start) start "$2" "$3" ;;
stop) stop "$2" ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
