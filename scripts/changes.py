#!/usr/bin/env python3
"""Node-wide changes per second through a cluster's change log.

Driven by scripts/load-changes.sh, which starts the cluster and passes the
node ports. CLIENTS clients each found a room of their own, say one message
in it, then REACT and UNREACT on it in turn, WINDOW unanswered at a time,
for DURATION seconds after a second's warm-up. A reaction is a node-wide
change: its transaction appends to the change log and holds the log's
counter row until it commits, so transactions with such changes take turns
across the whole cluster. Run twice: every client on node 0, then the same
number spread over the three nodes. Prints both rates (acknowledged changes
per second) as JSON. Python drives the clients; every wait is bounded.
"""

import json
import os
import sys
import time

from failover import Client, Driver, register_and_join


def run(ports, clients, window, duration, tag):
    d = Driver()
    cs = [Client(f"ch{tag}x{i}", ports[i % len(ports)]) for i in range(clients)]
    register_and_join(d, cs, lambda c: f"#{c.name}")
    for c in cs:
        c.send(f"SAY #{c.name} react to this")
    d.until("SAY", lambda: all(c.acked for c in cs))
    sent = {c: 0 for c in cs}
    base = {c: len(c.lines) for c in cs}

    def answers(c):
        return len(c.lines) - base[c]

    def top_up(c):
        while sent[c] - answers(c) < window:
            verb = "REACT" if sent[c] % 2 == 0 else "UNREACT"
            c.send(f"{verb} #{c.name} 1 ok")
            sent[c] += 1

    start = time.monotonic()
    counted_from = None
    while True:
        now = time.monotonic()
        if counted_from is None and now - start >= 1.0:
            counted_from = (now, sum(answers(c) for c in cs))
        if counted_from is not None and now - counted_from[0] >= duration:
            done = sum(answers(c) for c in cs) - counted_from[1]
            rate = done / (now - counted_from[0])
            break
        for c in cs:
            top_up(c)
        for c in d.poll(0.01):
            sys.exit(f"changes: {c.name} was cut off")
    d.until("the last answers", lambda: all(answers(c) == sent[c] for c in cs))
    errors = [l for c in cs for l in c.lines if l.startswith("ERR ")]
    if errors:
        sys.exit(f"changes: {len(errors)} refused, e.g. {errors[0]}")
    for c in cs:
        d.drop(c)
    return round(rate)


def main():
    ports = [int(p) for p in os.environ["NODE_PORTS"].split(",")]
    clients = int(os.environ.get("CLIENTS", "30"))
    window = int(os.environ.get("WINDOW", "8"))
    duration = float(os.environ.get("DURATION", "5"))
    tag = os.environ.get("TAG", str(os.getpid()))
    one = run(ports[:1], clients, window, duration, f"{tag}a")
    three = run(ports, clients, window, duration, f"{tag}b")
    report = {
        "clients": clients,
        "window": window,
        "changes_per_s_one_node": one,
        "changes_per_s_three_nodes": three,
        "ratio": round(three / one, 2) if one else None,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
