#!/usr/bin/env python3
"""Idle memory per session, plain TCP beside TLS, in one run.

Starts the release server with a TLS listener on a throwaway self-signed
certificate (scripts/tls-cert.sh), then for each transport opens N sessions
that each greet, REGISTER (so they are logged in, as in the connections
scenario) and then sit idle; the server's VmRSS is read after the first half
and after all, and the growth over the second half divided by its sessions
is the marginal KiB per idle session. Each transport gets a fresh server.

    cargo build --release && python3 scripts/tls-idle-memory.py [N]   (default 2000)
"""

import os
import socket
import ssl
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "linechat")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError(f"closed after {data!r}")
        data += chunk
    return data.decode().rstrip("\n")


def start_server(data_dir, cert_dir):
    args = [
        BIN, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
        "--tls-listen", "127.0.0.1:0",
        "--tls-cert", os.path.join(cert_dir, "cert.pem"),
        "--tls-key", os.path.join(cert_dir, "key.pem"),
        # Cheap hashing: this measures sessions, not argon2.
        "--argon2-memory-kib", "64", "--argon2-iterations", "1",
        "--max-unauth-per-ip", "100000", "--command-rate", "0",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    plain = proc.stdout.readline().split()[-1]
    tls = proc.stdout.readline().split()[-1]
    return proc, plain, tls


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def open_session(kind, target, context, n):
    sock = socket.create_connection(addr(target), timeout=10)
    if kind == "tls":
        sock = context.wrap_socket(sock, server_hostname="localhost")
    hello = read_line(sock)
    assert hello.startswith("HELLO "), hello
    sock.sendall(f"REGISTER u{n} password1\n".encode())
    reply = read_line(sock)
    assert reply == f"OK REGISTER u{n}", reply
    return sock


def measure(kind, count, cert_dir, context):
    with tempfile.TemporaryDirectory() as data_dir:
        proc, plain, tls = start_server(data_dir, cert_dir)
        target = tls if kind == "tls" else plain
        try:
            before = rss_kib(proc.pid)
            sessions = [open_session(kind, target, context, n) for n in range(count // 2)]
            half = rss_kib(proc.pid)
            sessions += [open_session(kind, target, context, n) for n in range(count // 2, count)]
            after = rss_kib(proc.pid)
            second = count - count // 2
            print(f"{kind:5} {count} idle sessions: "
                  f"{(after - before) / count:.2f} KiB per session overall, "
                  f"{(after - half) / second:.2f} KiB marginal (RSS {before} -> {half} -> {after} KiB)")
            for s in sessions:
                s.close()
        finally:
            proc.terminate()
            proc.wait()


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as cert_dir:
        subprocess.run(["bash", os.path.join(REPO, "scripts", "tls-cert.sh"), cert_dir],
                       check=True, stdout=subprocess.DEVNULL)
        context = ssl.create_default_context(cafile=os.path.join(cert_dir, "cert.pem"))
        for kind in ("plain", "tls"):
            measure(kind, count, cert_dir, context)


if __name__ == "__main__":
    main()
