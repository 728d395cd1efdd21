#!/usr/bin/env bash
# Runs every load scenario against linechat and, as reference points, Debian's
# InspIRCd, ngIRCd, NATS and Redis, each started here on 127.0.0.1 with its own
# generated config, flood control off where it can be turned off. "floor" is
# no peer but a yardstick: `linechat-load floor-server`, a single-threaded
# server that only copies each PUB to its subscribers' sockets (no parsing
# beyond the verb, no storage, no ids), i.e. what one core and the loopback
# stack allow at all. It gets a column but never counts as the best peer.
# "baseline" is another linechat build (BASELINE=path/to/its/linechat), run
# exactly like linechat, for before/after comparisons of a change inside the
# same interleaved rounds; it never counts as a peer either.
# Wires other than plain TCP (name them in SERVERS; certificates come from
# scripts/tls-cert.sh): linechat-ws (linechat's --ws-listen, the load tool's
# --proto ws), linechat-tls (--tls-listen, the load tool's --proto tls) and
# nats-tls (nats-server with a cert and key in its config; the load tool's
# NATS clients start TLS after the plaintext INFO). Their STATS go over a
# plain listener beside them. A "wires" table after the main one gives
# linechat-ws / linechat and linechat-tls / nats-tls for every metric, with
# the server's CPU per delivery (all threads) and its share of its core, so
# the per-recipient cost of encryption and framing shows beside the rates.
# The server runs on core 0, the load tool on core 1; every server is started fresh for
# each scenario (so memory numbers start from a clean process) and stopped by
# pid. Prints a markdown table (scenario x server, linechat / best peer, and
# each linechat column / the best peer of its durability class).
# With ROUNDS > 1 every scenario runs that many times, the servers taking
# turns within each round (so a noisy minute on a shared host hits all of
# them), and each cell is the median of the rounds.
#
# Env: SERVERS, SCENARIOS (subsets of the defaults below), ROUNDS (1), DURATION (10),
# SUBSCRIBERS (1000), RATE (50), CONNECTIONS (10000), ROOMS (100),
# ROOM_SIZE (10), ROOMS_RATE (5000), DURABLE_WINDOW (16: unanswered SAYs per
# member in the durable scenario), BASE_PORT (17800), OUT (results dir),
# BASELINE (a linechat binary, for the "baseline" server). SERVERS may also
# name the durable peers redis-aof, redis-everysec and nats-js, and
# linechat-<level> for linechat with --durability <level> (see below).
#
# Flood control that can NOT be turned off (see also the config comments):
# - ngIRCd: per-client command limit per main-loop turn, 2 KB read buffer and
#   bounded write buffer (slow readers are dropped), listen backlog of 10 are
#   compile-time constants. MaxPenaltyTime=0 removes penalty delays; publishers
#   additionally OPER and set user mode +F ("relaxed flood protection").
# - InspIRCd: no switch; penalty is made unreachable (threshold, commandrate)
#   and buffers raised. netbuffersize is at most 65534: larger values silently
#   fall back to 10240, which stalls pipelined publishers for a second a time.
# - linechat: --command-rate 0 turns its flood control off; the limit on
#   not-yet-logged-in connections per address is raised (all clients are
#   127.0.0.1).
# - NATS, Redis: no per-command flood control; Redis' pubsub output buffer
#   limit is disabled, NATS keeps its slow-consumer write deadline (raised).
#
# Durable peers and what each server persists (DURABILITY below is the table
# the report's per-class ratios use; "acked" is the reply a publisher counts):
# - pub/sub class, nothing kept: inspircd, ngircd, nats (core NATS), redis
#   (PUBLISH, --save '' and no AOF). A message lives only in socket buffers;
#   a crash or restart loses every message not yet delivered.
# - crash-safe class (survives a crash of the server process, not of the
#   machine): redis-everysec, Redis Streams (XADD acked by its id, one
#   XREAD BLOCK loop per subscriber) with appendonly yes, appendfsync
#   everysec. Redis write()s the AOF buffer before it sends the replies of an
#   event-loop turn (beforeSleep: flushAppendOnlyFile, then the client
#   writes), so an acked entry is in the OS and survives kill -9, except
#   while the previous once-a-second background fsync is still running: then
#   the write is postponed for up to 2 s with the replies sent anyway
#   (aof.c flushAppendOnlyFile, "aof_delayed_fsync"), so a process crash can
#   lose up to ~2 s of acked entries on a slow disk. Power loss loses what
#   was not fsynced yet: about the last second (redis.conf: "Redis can lose
#   just one second of writes in a dramatic event like a server power
#   outage"), more if fsyncs are slow.
#   nats-js: JetStream, one file-stored stream per room, one push consumer
#   (ack policy none, deliver policy new) per subscriber, PubAck as the ack.
#   nats-server 2.9.10 has no sync_interval option (it is a config error;
#   the option and its "always" value arrived in later releases): a stream's
#   file store flushes each message to its block file (write(2), "flush in
#   place") before the PubAck and fsyncs every 2 minutes (stream.go,
#   filestore.go syncBlocks). So kill -9 loses nothing acked; power loss can
#   lose up to two minutes.
# - disk class (fsynced before the ack): redis-aof, Redis Streams as above
#   with appendfsync always: the AOF is written and fsynced in beforeSleep,
#   before that turn's replies and XREAD answers go out. Pipelined XADDs
#   read in one turn share one fsync (a group commit).
# - linechat-<level>: linechat started with --durability <level> (plain
#   "linechat" is the default level, sync): sync is in the disk class
#   (committed and fsynced before OK SAY and the fan-out), write in the
#   crash-safe class (written to the OS before OK, fsynced within a bound),
#   async in the pub/sub class as far as acked messages go (OK at once).
#   A level not in DURABILITY is run but gets no per-class ratio.
# The durable brokers run only fanout and latency (their load tool adapters
# give a client one role); rooms and connections skip them.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SERVERS=${SERVERS:-"linechat inspircd ngircd nats redis floor"}
SCENARIOS=${SCENARIOS:-"fanout fanout4 latency rooms durable connections"}
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-10}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATE=${RATE:-50}
CONNECTIONS=${CONNECTIONS:-10000}
ROOMS=${ROOMS:-100}
ROOM_SIZE=${ROOM_SIZE:-10}
ROOMS_RATE=${ROOMS_RATE:-5000}
DURABLE_WINDOW=${DURABLE_WINDOW:-16}
BASE_PORT=${BASE_PORT:-17800}
HANDSHAKE_TIMEOUT=${HANDSHAKE_TIMEOUT:-600}
OUT=${OUT:-$REPO/target/compare-$(date +%Y%m%d-%H%M%S)}
LOAD="$REPO/target/release/linechat-load"
WORK=$(mktemp -d)
SERVER_PID=
# Load tool arguments the current server's wire needs (set by start_server).
WIRE_ARGS=

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

# Debian package per peer; Debian's "ergo" is a chemistry program, not ergochat.
install_peers() {
    local missing=()
    command -v inspircd >/dev/null || missing+=(inspircd)
    command -v ngircd >/dev/null || missing+=(ngircd)
    command -v nats-server >/dev/null || missing+=(nats-server)
    command -v redis-server >/dev/null || missing+=(redis-server)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    fi
}

# Replaces the current (sub)shell with "$@" on core $1 where possible; call
# it backgrounded or in ( ) so "$!" is the program's own pid.
on_core() {
    local core=$1
    shift
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        exec taskset -c "$core" "$@"
    fi
    exec "$@"
}

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

write_inspircd_conf() { # dir port
    cat >"$1/inspircd.conf" <<CONF
<server name="bench.local" description="benchmark" network="Bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="$2" type="clients">
# Penalty (fakelag) made unreachable: 1e6 commands of credit, refilled at 1e6/s.
<connect name="main" allow="*" timeout="60" pingfreq="600" maxchans="100"
         hardsendq="128M" softsendq="16M" recvq="16M"
         threshold="1000000" commandrate="1000000000" fakelag="yes"
         localmax="100000" globalmax="100000" maxconnwarn="no" limit="100000"
         resolvehostnames="no" useident="no">
# netbuffersize must stay <= 65534 (see the header of this script).
<performance softlimit="19000" somaxconn="4096" clonesonconnect="no"
             netbuffersize="65534" quietbursts="yes">
<dns server="127.0.0.1" timeout="1">
<pid file="$1/inspircd.pid">
<files motd="$1/motd.txt">
<options prefixquit="Quit: " syntaxhints="no" announcets="no" hostintopic="yes"
         pingwarning="15" splitwhois="no" exemptchanops="">
<security hideserver="" userstats="Pu" customversion="" flatlinks="no"
          hidesplits="no" hideulines="no" hidebans="no" maxtargets="20"
          announceinvites="none">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="12" maxquit="255"
        maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200">
<whowas groupsize="0" maxgroups="0" maxkeep="3600">
<channels users="100" opers="100">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="$1/ircd.log">
CONF
    echo bench >"$1/motd.txt"
}

write_ngircd_conf() { # dir port
    cat >"$1/ngircd.conf" <<CONF
[Global]
	Name = bench.local
	Info = benchmark
	Listen = 127.0.0.1
	Ports = $2
	MotdPhrase = bench
	PidFile = $1/ngircd.pid
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxNickLength = 30
	# 0 disables penalty delays (the command limit per loop turn stays).
	MaxPenaltyTime = 0
	PingTimeout = 600
	PongTimeout = 600
[Options]
	DNS = no
	Ident = no
	PAM = no
# Publishers OPER as this operator to set user mode +F (relaxed flood control).
[Operator]
	Name = bench
	Password = benchpass
CONF
}

write_nats_conf() { # dir port
    cat >"$1/nats.conf" <<CONF
listen: 127.0.0.1:$2
max_connections: 100000
max_pending: 268435456
write_deadline: "30s"
CONF
}

# A self-signed certificate for the TLS wires, made once per run.
tls_cert() {
    [ -f "$WORK/tls/cert.pem" ] || bash "$REPO/scripts/tls-cert.sh" "$WORK/tls" >/dev/null
}

# Starts server $1 on port $2 (core 0); sets SERVER_PID, PROTO and WIRE_ARGS.
start_server() {
    local name=$1 port=$2 dir="$WORK/$1"
    # The plain listener beside a TLS or WebSocket one (linechat's STATS).
    local stats_port=$((port + 5000))
    WIRE_ARGS=
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use; set BASE_PORT" >&2
        return 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    case $name in
    linechat-ws | linechat-tls)
        tls_cert
        local wire=(--ws-listen "127.0.0.1:$port")
        PROTO=ws
        WIRE_ARGS="--stats-addr 127.0.0.1:$stats_port"
        if [ "$name" = linechat-tls ]; then
            wire=(--tls-listen "127.0.0.1:$port" --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem")
            PROTO=tls
            WIRE_ARGS="$WIRE_ARGS --tls-ca $WORK/tls/cert.pem"
        fi
        on_core 0 "$REPO/target/release/linechat" --listen "127.0.0.1:$stats_port" "${wire[@]}" \
            --data-dir "$dir/data" --command-rate 0 --max-unauth-per-ip 100000 \
            >"$dir/server.log" 2>&1 &
        ;;
    linechat | linechat-* | baseline)
        PROTO=linechat
        local bin="$REPO/target/release/linechat" level=()
        if [ "$name" = baseline ]; then
            bin=${BASELINE:?set BASELINE to the linechat binary to compare with}
        elif [ "$name" != linechat ]; then
            level=(--durability "${name#linechat-}")
        fi
        on_core 0 "$bin" --listen "127.0.0.1:$port" "${level[@]}" \
            --data-dir "$dir/data" --command-rate 0 --max-unauth-per-ip 100000 \
            >"$dir/server.log" 2>&1 &
        ;;
    inspircd)
        PROTO=irc
        write_inspircd_conf "$dir" "$port"
        on_core 0 inspircd --config="$dir/inspircd.conf" --nofork --runasroot \
            >"$dir/server.log" 2>&1 &
        ;;
    ngircd)
        PROTO=irc
        write_ngircd_conf "$dir" "$port"
        on_core 0 ngircd -n -f "$dir/ngircd.conf" >"$dir/server.log" 2>&1 &
        ;;
    nats | nats-js | nats-tls)
        PROTO=${name%-tls}
        write_nats_conf "$dir" "$port"
        if [ "$name" = nats-js ]; then
            echo "jetstream { store_dir: \"$dir/jetstream\" }" >>"$dir/nats.conf"
        fi
        if [ "$name" = nats-tls ]; then
            tls_cert
            echo "tls { cert_file: \"$WORK/tls/cert.pem\", key_file: \"$WORK/tls/key.pem\" }" >>"$dir/nats.conf"
            WIRE_ARGS="--tls-ca $WORK/tls/cert.pem"
        fi
        on_core 0 nats-server -c "$dir/nats.conf" >"$dir/server.log" 2>&1 &
        ;;
    redis | redis-aof | redis-everysec)
        PROTO=redis
        local aof=(--appendonly no)
        case $name in
        redis-aof) aof=(--appendonly yes --appendfsync always) ;;
        redis-everysec) aof=(--appendonly yes --appendfsync everysec) ;;
        esac
        [ "$name" = redis ] || PROTO=redis-streams
        on_core 0 redis-server --bind 127.0.0.1 --port "$port" --save '' \
            "${aof[@]}" --protected-mode no --maxclients 19000 \
            --client-output-buffer-limit "pubsub 0 0 0" --dir "$dir" \
            >"$dir/server.log" 2>&1 &
        ;;
    floor)
        PROTO=floor
        on_core 0 "$LOAD" floor-server --listen "127.0.0.1:$port" \
            >"$dir/server.log" 2>&1 &
        ;;
    *)
        echo "unknown server $name" >&2
        return 1
        ;;
    esac
    SERVER_PID=$!
    if ! wait_port "$port"; then
        echo "$name did not start; log:" >&2
        tail -5 "$dir/server.log" >&2
        # It may still come up later: stop it, so no server outlives the run.
        stop_server
        return 1
    fi
}

# SIGTERM, then SIGKILL after 10 s: ngIRCd takes minutes to say goodbye to
# 10000 clients one by one.
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
# Load tool arguments the current server's wire needs (set by start_server).
WIRE_ARGS=
    fi
}

# Scenario name -> load tool arguments.
scenario_args() {
    case $1 in
    fanout) echo "fanout --subscribers $SUBSCRIBERS --publishers 1" ;;
    fanout4) echo "fanout --subscribers $SUBSCRIBERS --publishers 4" ;;
    latency) echo "latency --subscribers $SUBSCRIBERS --rate $RATE" ;;
    rooms) echo "rooms --rooms $ROOMS --room-size $ROOM_SIZE --rate $ROOMS_RATE" ;;
    durable) echo "durable --rooms $ROOMS --room-size $ROOM_SIZE --window $DURABLE_WINDOW" ;;
    connections) echo "connections --connections $CONNECTIONS --room-size $ROOM_SIZE --hold 3" ;;
    esac
}

# Scenario name -> lines of "metric better", where better is high or low.
key_metrics() {
    case $1 in
    fanout | fanout4) printf '%s\n' "delivered_per_s high" "server_cpu_ns_per_delivery low" "server_cpu_all_pct low" ;;
    latency | rooms) echo "latency_p99_us low" ;;
    durable) printf '%s\n' "committed_per_s high" "storage_cpu_us_per_message low" ;;
    connections) printf '%s\n' "server_kib_per_session low" "server_marginal_kib_per_session low" ;;
    esac
}

# Value of a numeric metric in a result file (pretty JSON, one key a line).
metric() { # file name
    [ -f "$1" ] || return 0
    sed -n "s/^ *\"$2\": \([-0-9.e]*\),\{0,1\}$/\1/p" "$1" | head -1
}

# Median over the rounds of a scenario/server's metric; empty if no round
# produced it.
median_metric() { # scenario server name
    local r
    for r in $(seq 1 "$ROUNDS"); do
        metric "$OUT/$1-$2-$r.json" "$3"
    done | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# Whether server $1 runs scenario $2: the durable brokers' adapters give a
# client one role, publisher or subscriber, which rooms and connections
# do not fit; durable counts what linechat's storage thread committed
# (STATS), which only linechat has.
runs() {
    case $1:$2 in
    *:durable) is_linechat "$1" || [ "$1" = baseline ] || return 1 ;;
    redis-aof:rooms | redis-everysec:rooms | nats-js:rooms) return 1 ;;
    redis-aof:connections | redis-everysec:connections | nats-js:connections) return 1 ;;
    esac
}

# Server -> durability class of what it acknowledges (see the header): none
# (pub/sub: nothing kept), process (survives a crash of the server process,
# not of the machine), disk (fsynced before the ack). Empty for the
# yardsticks (floor, baseline) and for linechat levels not listed here.
durability() {
    case $1 in
    inspircd | ngircd | nats | nats-tls | redis | linechat-async) echo none ;;
    redis-everysec | nats-js | linechat-write) echo process ;;
    redis-aof | linechat | linechat-sync | linechat-ws | linechat-tls) echo disk ;;
    esac
}

class_name() {
    case $1 in
    none) echo "pub/sub" ;;
    process) echo "crash-safe" ;;
    disk) echo "fsync" ;;
    esac
}

is_linechat() {
    case $1 in
    linechat | linechat-*) return 0 ;;
    esac
    return 1
}

# Peers: servers that are neither linechat nor a yardstick.
is_peer() {
    ! is_linechat "$1" && [ "$1" != floor ] && [ "$1" != baseline ]
}

extra_args() {
    case $1 in
    # ngIRCd listens with a backlog of 10 and JOIN floods are slow there.
    ngircd) echo "--concurrency 20 --irc-oper bench:benchpass" ;;
    # InspIRCd finishes registrations in a once-a-second timer, so it needs
    # many in flight (its backlog is configured to 4096).
    inspircd) echo "--concurrency 2000" ;;
    esac
}

main() {
    install_peers
    ulimit -n "$(ulimit -Hn)"
    (cd "$REPO" && cargo build --release --bins)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    mkdir -p "$OUT"
    local port=$BASE_PORT
    for sc in $SCENARIOS; do
        for r in $(seq 1 "$ROUNDS"); do
            for srv in $SERVERS; do
                if ! runs "$srv" "$sc"; then
                    echo "== $sc on $srv: skipped (durable is linechat only; the durable brokers run fanout and latency only)" >&2
                    continue
                fi
                port=$((port + 1))
                local run="$OUT/$sc-$srv-$r"
                echo "== $sc on $srv, round $r of $ROUNDS (127.0.0.1:$port)" >&2
                if ! start_server "$srv" "$port"; then
                    continue
                fi
                # Bounded: handshake + run + slack; the tool has its own deadline too.
                # shellcheck disable=SC2046
                (on_core 1 timeout $((HANDSHAKE_TIMEOUT + DURATION + 120)) "$LOAD" \
                    $(scenario_args "$sc") $(extra_args "$srv") $WIRE_ARGS --proto "$PROTO" \
                    --addr "127.0.0.1:$port" --duration "$DURATION" \
                    --handshake-timeout "$HANDSHAKE_TIMEOUT" --server-pid "$SERVER_PID" \
                    --json "$run.json" >"$run.txt" 2>"$run.err") ||
                    echo "   failed, see $run.err" >&2
                stop_server
            done
        done
    done
    report | tee "$OUT/summary.md"
}

# The five processes that used most CPU over the last second, as top sees
# them (the second of two samples, so the figures are current).
busiest() {
    top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ { n++ }
        n == 2 && $1 ~ /^[0-9]+$/ && k < 5 { printf "%s%s %s%%", sep, $12, $9; sep = ", "; k++ }'
}

report() {
    echo "# linechat vs peers, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr); server on core 0, load tool on core 1"
    echo "- inspircd $(inspircd --version 2>/dev/null | head -1), $(ngircd --version 2>/dev/null | head -1 | cut -d- -f1), $(nats-server --version 2>/dev/null | head -1), $(redis-server --version 2>/dev/null | cut -d' ' -f1-3)"
    echo "- rounds: $ROUNDS; with more than one, each cell is the median of the rounds"
    # Other work on the machine skews absolute figures, less so ratios
    # within interleaved rounds.
    echo "- load average (1/5/15 min) before the runs: ${LOAD_BEFORE:-?}, after: $(cut -d' ' -f1-3 /proc/loadavg); busiest processes at the end (top, over 1 s): $(busiest)"
    echo "- params: duration ${DURATION}s, subscribers $SUBSCRIBERS, latency rate $RATE/s, rooms $ROOMS x $ROOM_SIZE at $ROOMS_RATE/s (durable: every member, $DURABLE_WINDOW unanswered), connections $CONNECTIONS; raw results in $OUT"
    echo "- what each column keeps of an acknowledged message (classes: pub/sub = nothing, crash-safe = survives a crash of the server process but not of the machine, fsync = on disk before the ack; details at the top of scripts/compare.sh):"
    local srv class
    for srv in $SERVERS; do
        class=$(durability "$srv")
        if [ -n "$class" ]; then
            echo "  - $srv: $(class_name "$class")"
        elif is_linechat "$srv"; then
            echo "  - $srv: level not in compare.sh's durability table, so no per-class ratio"
        else
            echo "  - $srv: yardstick, not a peer"
        fi
    done
    echo
    local columns=()
    for srv in $SERVERS; do
        columns+=("$srv")
    done
    columns+=("linechat / best peer")
    for srv in $SERVERS; do
        class=$(durability "$srv")
        if is_linechat "$srv" && [ -n "$class" ]; then
            columns+=("$srv / best $(class_name "$class") peer")
        fi
    done
    table_head "${columns[@]}"
    for sc in $SCENARIOS; do
        while read -r name better; do
            report_row "$sc" "$name" "$better"
        done < <(key_metrics "$sc")
    done
    wires_table
}

# Prints a table's header and rule: scenario, metric, then the columns "$@".
table_head() {
    local header="| scenario | metric |" rule="|---|---|" column
    for column in "$@"; do
        header="$header $column |"
        rule="$rule---|"
    done
    echo "$header"
    echo "$rule"
}

# The wire pairs the targets compare (numerator, denominator), where both
# ran: linechat over WebSocket against itself over TCP, linechat over TLS
# against NATS over TLS.
WIRE_PAIRS="linechat-ws:linechat linechat-tls:nats-tls"

wires_table() {
    local pairs=() pair
    for pair in $WIRE_PAIRS; do
        if [[ " $SERVERS " == *" ${pair%:*} "* && " $SERVERS " == *" ${pair#*:} "* ]]; then
            pairs+=("$pair")
        fi
    done
    [ ${#pairs[@]} -gt 0 ] || return 0
    echo
    echo "Wires: each cell is the ratio of the two medians (same rounds, same machine)."
    echo
    local columns=() sc name better row
    for pair in "${pairs[@]}"; do
        columns+=("${pair%:*} / ${pair#*:}")
    done
    table_head "${columns[@]}"
    for sc in $SCENARIOS; do
        while read -r name better; do
            row="| $sc | $name ($better is better) |"
            for pair in "${pairs[@]}"; do
                row="$row $(ratio "$(median_metric "$sc" "${pair%:*}" "$name")" "$(median_metric "$sc" "${pair#*:}" "$name")") |"
            done
            echo "$row"
        done < <(key_metrics "$sc")
    done
}

# Whether value $1 beats $2 (empty $2: anything does) when $3 (high or low)
# is better.
beats() {
    [ -z "$2" ] || awk -v a="$1" -v b="$2" -v h="$3" \
        'BEGIN { exit !((h == "high") ? a > b : a < b) }'
}

ratio() { # value best
    if [ -n "$1" ] && [ -n "$2" ] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
    else
        echo -
    fi
}

report_row() { # scenario metric better
    local row="| $1 | $2 ($3 is better) |" best="" v srv class
    local -A value best_of
    for srv in $SERVERS; do
        v=$(median_metric "$1" "$srv" "$2")
        value[$srv]=$v
        row="$row ${v:--} |"
        [ -n "$v" ] && is_peer "$srv" || continue
        class=$(durability "$srv")
        if beats "$v" "$best" "$3"; then
            best=$v
        fi
        if beats "$v" "${best_of[$class]:-}" "$3"; then
            best_of[$class]=$v
        fi
    done
    row="$row $(ratio "${value[linechat]:-}" "$best") |"
    for srv in $SERVERS; do
        class=$(durability "$srv")
        if is_linechat "$srv" && [ -n "$class" ]; then
            row="$row $(ratio "${value[$srv]}" "${best_of[$class]:-}") |"
        fi
    done
    echo "$row"
}

main "$@"
