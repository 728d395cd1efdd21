#!/usr/bin/env python3
"""Kill one node of a running cluster under load; count what was lost.

Driven by scripts/load-failover.sh, which starts the cluster and passes the
node ports and the pid of node 0. SUBSCRIBERS clients join one room, spread
round robin over the three nodes; a publisher on node 0 and one on node 1
each SAY RATE messages a second. After WARMUP seconds node 0 is killed with
SIGKILL. Its clients see their connection end, connect to node 1 or 2 (in
turn, as a balancer would; through HAProxy's front port if FRONT_PORT is
set) and LOGIN, whose implied SYNC brings what they missed. Publishing goes on for AFTER seconds (node 0's publisher is gone),
then every subscriber must have every seq up to the last acknowledged one.

Prints, as JSON: the messages acknowledged (per publisher), how many an
acknowledged seq failed to reach (must be 0), gaps in any subscriber's seqs
(must be 0), duplicates (allowed: at-least-once across a reconnect, up to
the cursors' last save), and the reconnect-to-synced time of the moved
clients (from seeing the connection end, and from the kill, to OK SYNC),
p50/p99/max in ms. Exits 1 if anything acknowledged was lost or a gap was
seen. Every wait is bounded.

Python drives the clients: its own time is in the figures, so they are an
upper bound on what the server takes.
"""

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

PASSWORD = "password1"
ROOM = "#failover"


class Client:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.buf = b""
        self.lines = []
        self.seen = {}  # seq -> times seen
        self.high = 0  # every seq up to this one seen
        self.acked = []
        self.acked_at = []  # when each of `acked` was answered
        self.closed = False
        self.connect()

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sock.setblocking(False)
        self.closed = False
        self.buf = b""

    def send(self, line):
        data = (line + "\n").encode()
        self.sock.setblocking(True)
        self.sock.settimeout(5)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def pump(self):
        """Reads what is there; returns False once the peer has closed."""
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return True
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        *complete, self.buf = self.buf.split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip("\r")
            if line.startswith("MSG "):
                seq = int(line.split(" ", 3)[2])
                self.seen[seq] = self.seen.get(seq, 0) + 1
                while self.high + 1 in self.seen:
                    self.high += 1
            elif line.startswith("OK SAY "):
                self.acked.append(int(line.split(" ", 4)[3]))
                self.acked_at.append(time.monotonic())
            elif line.startswith("OK ") or line.startswith("ERR "):
                self.lines.append(line)
        return True


class Driver:
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.clients = {}

    def add(self, c):
        self.clients[c.sock.fileno()] = c
        self.sel.register(c.sock, selectors.EVENT_READ, c)

    def drop(self, c):
        self.sel.unregister(c.sock)
        del self.clients[c.sock.fileno()]
        c.sock.close()

    def poll(self, timeout):
        """Reads every ready client; returns those whose connection ended."""
        ended = []
        for key, _ in self.sel.select(timeout):
            c = key.data
            if not c.pump():
                ended.append(c)
        return ended

    def until(self, what, done, limit=60.0):
        deadline = time.monotonic() + limit
        while not done():
            if time.monotonic() > deadline:
                sys.exit(f"failover: timed out waiting for {what}")
            for c in self.poll(0.2):
                sys.exit(f"failover: {c.name} was cut off during {what}")


def answered(clients, prefix):
    """Whether each client's newest final answer starts with `prefix`."""

    def check():
        for c in clients:
            if not c.lines:
                return False
            if c.lines[-1].startswith("ERR "):
                sys.exit(f"failover: {c.name}: {c.lines[-1]}")
            if not c.lines[-1].startswith(prefix):
                return False
        return True

    return check


def register_and_join(d, clients, room):
    """Adds each client to `d`, registers it and has it JOIN `room(client)`."""
    for c in clients:
        d.add(c)
        c.send(f"REGISTER {c.name} {PASSWORD}")
    d.until("REGISTER", answered(clients, "OK REGISTER"))
    for c in clients:
        c.send(f"JOIN {room(c)}")
    d.until("JOIN", answered(clients, "OK JOIN"))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    ports = [int(p) for p in os.environ["NODE_PORTS"].split(",")]
    victim = int(os.environ["VICTIM_PID"])
    subscribers = int(os.environ.get("SUBSCRIBERS", "300"))
    rate = float(os.environ.get("RATE", "50"))
    warmup = float(os.environ.get("WARMUP", "3"))
    after = float(os.environ.get("AFTER", "3"))
    tag = os.environ.get("TAG", str(os.getpid()))
    fault = os.environ.get("FAULT", "node")
    front = int(os.environ.get("FRONT_PORT") or 0)
    # A stopped node must stay stopped past the presence TTL (10 s).
    down = float(os.environ.get("DOWN", "12" if fault == "stop" else "2"))
    if fault not in ("node", "redis", "pg", "stop"):
        sys.exit("failover: FAULT is node, redis, pg or stop")
    d = Driver()

    owner = Client(f"own{tag}", ports[0])
    register_and_join(d, [owner], lambda c: ROOM)
    # The room must be known on every node before their clients JOIN it.
    for port in ports[1:]:
        probe = Client(f"probe{port}", port)
        d.add(probe)
        probe.send(f"LOGIN {owner.name} {PASSWORD}")
        d.until("a probe's LOGIN", answered([probe], "OK SYNC"))
        deadline = time.monotonic() + 30
        while True:
            probe.send(f"WHO {ROOM}")
            d.until("WHO", lambda: probe.lines[-1].startswith(("OK WHO", "ERR ")))
            if probe.lines[-1].startswith("OK WHO"):
                break
            if time.monotonic() > deadline:
                sys.exit(f"failover: node on {port} never heard of {ROOM}")
            time.sleep(0.05)
        d.drop(probe)

    subs = [Client(f"sub{tag}x{i}", ports[i % 3]) for i in range(subscribers)]
    pubs = [Client(f"pub{tag}x{i}", ports[i]) for i in range(2)]
    register_and_join(d, subs + pubs, lambda c: ROOM)
    # The owner hears nothing more it needs.
    d.drop(owner)

    interval = 1.0 / rate
    next_say = time.monotonic()
    said = [0, 0]
    start = time.monotonic()
    faulted_at = None
    redis = None  # the Redis started again (FAULT=redis)
    restarting = fault in ("redis", "pg", "stop")
    restarted_at = None
    due = None  # the last seq acknowledged when Redis came back
    caught_up_at = None
    acked_at_fault = None

    def check_caught_up():
        nonlocal caught_up_at
        if due is not None and caught_up_at is None:
            if all(c.high >= due for c in subs):
                caught_up_at = time.monotonic()
        return caught_up_at is not None

    moved = {}  # client -> [ended at, synced at]
    turn = 0
    try:
        while True:
            now = time.monotonic()
            if faulted_at is None and now - start >= warmup:
                # PostgreSQL's immediate shutdown: no checkpoint, WAL
                # recovery when it starts again, as after a crash.
                how = {"pg": signal.SIGQUIT, "stop": signal.SIGSTOP}
                os.kill(victim, how.get(fault, signal.SIGKILL))
                faulted_at = time.monotonic()
                acked_at_fault = max(pubs[0].acked + pubs[1].acked, default=0)
            if restarting and faulted_at is not None and restarted_at is None:
                if now - faulted_at >= down:
                    if fault == "stop":
                        os.kill(victim, signal.SIGCONT)
                    elif fault == "redis":
                        redis = subprocess.Popen(
                            ["redis-server", "--port", os.environ["REDIS_PORT"]]
                            + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    else:
                        pg = [os.environ["PG_SCRIPT"], "start", os.environ["PG_DIR"]]
                        subprocess.run(
                            pg + [os.environ["PG_PORT"]],
                            check=True,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    restarted_at = time.monotonic()
                    due = max(pubs[0].acked + pubs[1].acked, default=0)
            check_caught_up()
            ends_after = restarted_at if restarting else faulted_at
            if ends_after is not None and now - ends_after >= after:
                break
            if now >= next_say:
                for i, p in enumerate(pubs):
                    if not p.closed:
                        said[i] += 1
                        try:
                            p.send(f"SAY {ROOM} p{i}m{said[i]}")
                        except OSError:
                            p.closed = True
                next_say += interval
            for c in d.poll(max(0.0, min(next_say - time.monotonic(), 0.02))):
                if faulted_at is None or fault != "node":
                    sys.exit(f"failover: {c.name} was cut off")
                d.drop(c)
                if c in pubs:
                    continue
                ended = time.monotonic()
                # Through the balancer when there is one, as a user would.
                c.port = front or ports[1 + turn % 2]
                turn += 1
                c.connect()
                c.lines.clear()
                d.add(c)
                c.send(f"LOGIN {c.name} {PASSWORD}")
                moved[c] = [ended, None]
            for c, times in moved.items():
                if times[1] is None and c.lines and c.lines[-1].startswith(("OK SYNC", "ERR ")):
                    if c.lines[-1].startswith("ERR "):
                        sys.exit(f"failover: {c.name}: {c.lines[-1]}")
                    times[1] = time.monotonic()

        # Every SAY sent to a live node gets its answer before the counts.
        d.until(
            "the publishers' answers",
            lambda: all(
                p.closed or len(p.acked) + sum(1 for l in p.lines if l.startswith("ERR ")) == n
                for p, n in zip(pubs, said)
            ),
        )
        acked = sorted(pubs[0].acked + pubs[1].acked)
        last = acked[-1] if acked else 0
        d.until(
            "the subscribers to catch up",
            lambda: all(t[1] is not None for t in moved.values())
            and all(c.high >= last for c in subs)
            and (not restarting or check_caught_up()),
            limit=60,
        )
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    lost = sum(1 for c in subs for s in acked if s not in c.seen)
    gaps = sum(1 for c in subs for s in range(1, max(c.seen, default=0)) if s not in c.seen)
    dups = sum(n - 1 for c in subs for n in c.seen.values())
    report = {
        "fault": fault,
        "subscribers": subscribers,
        "rate_per_publisher": rate,
        "acknowledged": {"node0": len(pubs[0].acked), "node1": len(pubs[1].acked)},
        "last_acknowledged_seq": last,
        # Committed by node 0 just before the kill, never answered: seen
        # by the subscribers, and no loss either way.
        "committed_unacknowledged": sorted(
            {s for c in subs for s in c.seen if s <= last} - set(acked)
        ),
        "lost": lost,
        "gaps": gaps,
        "duplicates": dups,
    }
    if fault == "node":
        if not moved:
            sys.exit("failover: no client was on node 0")
        report["moved"] = len(moved)
        report["reconnect_to_synced_ms"] = spread([t[1] - t[0] for t in moved.values()])
        report["kill_to_synced_ms"] = spread([t[1] - faulted_at for t in moved.values()])
    else:
        report["down_s"] = down
        report["acknowledged_while_down"] = sum(1 for s in acked if acked_at_fault < s <= due)
        # What the publishers were told instead of OK, by error code.
        refused = {}
        for p in pubs:
            for line in p.lines:
                if line.startswith("ERR "):
                    code = line.split(" ", 2)[1]
                    refused[code] = refused.get(code, 0) + 1
        report["refused"] = refused
        report["back_to_caught_up_ms"] = round((caught_up_at - restarted_at) * 1000, 1)
        # The first SAY acknowledged after the restart, by either node.
        first = min(t for p in pubs for t in p.acked_at if t >= restarted_at)
        report["back_to_first_ack_ms"] = round((first - restarted_at) * 1000, 1)
    print(json.dumps(report, indent=2))
    if lost or gaps:
        sys.exit(1)


def spread(seconds):
    ms = [t * 1000 for t in seconds]
    return {
        "p50": round(percentile(ms, 50), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(max(ms), 1),
    }


if __name__ == "__main__":
    main()
