#!/usr/bin/env python3
"""Push notification throughput to a loopback Matrix push gateway.

Starts linechat (target/release/linechat, --push-allow-private, a temporary
data dir) and a gateway on loopback (a threaded HTTP/1.1 server that answers
every POST `200 {}` and counts them). USERS users register a pusher each,
join #bench and log out; one more user says MESSAGES messages there, so
USERS x MESSAGES notifications are queued. Prints the notifications per
second from the first POST to the last, and the server's peak RSS.

With DOWN=1 the gateway is started only after every message is
acknowledged: the queue (in the database, not in memory) holds them all
meanwhile, and RSS while they wait is printed too.

  USERS=200 MESSAGES=20 python3 scripts/push-bench.py
"""
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

USERS = int(os.environ.get("USERS", "200"))
MESSAGES = int(os.environ.get("MESSAGES", "20"))
DOWN = os.environ.get("DOWN") == "1"
BINARY = os.environ.get("LINECHAT", "target/release/linechat")

received = []
lock = threading.Lock()
done = threading.Event()


class Gateway(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The answer goes out in two writes (head, body): without this, Nagle's
    # algorithm holds the second for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with lock:
            received.append(time.monotonic())
            if len(received) == USERS * MESSAGES:
                done.set()

    def log_message(self, *args):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(30)
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def until(self, prefix):
        while True:
            line = self.line()
            if line.startswith(prefix):
                return line
            if line.startswith("ERR"):
                raise SystemExit(line)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    port, gw_port = free_port(), free_port()
    url = f"http://127.0.0.1:{gw_port}/_matrix/push/v1/notify"
    data = tempfile.mkdtemp(prefix="linechat-push-bench-")
    env = dict(os.environ, LINECHAT_ARGON2_MEMORY_KIB="64", LINECHAT_ARGON2_ITERATIONS="1",
               RUST_LOG="error")
    server = subprocess.Popen([BINARY, "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                               "--push-allow-private", "--command-rate", "0",
                               "--max-unauth-per-ip", "100000"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gateway = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.05)

        def start_gateway():
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", gw_port), Gateway)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            return srv

        if not DOWN:
            gateway = start_gateway()
        for i in range(USERS):
            c = Client(port)
            c.line()
            c.send(f"REGISTER u{i} password1")
            c.until("OK REGISTER")
            c.send(f"PUSHER ADD bench key-{i} {url}")
            c.until("OK PUSHER ADD")
            c.send("JOIN #bench")
            c.until("OK JOIN")
            c.send("QUIT")
            c.until("OK QUIT")
            c.sock.close()
        sender = Client(port)
        sender.line()
        sender.send("REGISTER sender password1")
        sender.until("OK REGISTER")
        sender.send("JOIN #bench")
        sender.until("OK JOIN")
        for n in range(MESSAGES):
            sender.send(f"SAY #bench message {n}")
        for n in range(MESSAGES):
            sender.until("OK SAY")
        if DOWN:
            time.sleep(2)
            print(f"gateway down, {USERS * MESSAGES} queued: server RSS {rss_kib(server.pid)} KiB")
            gateway = start_gateway()
        if not done.wait(600):
            raise SystemExit(f"only {len(received)} of {USERS * MESSAGES} notifications")
        span = received[-1] - received[0]
        total = len(received)
        print(f"{total} notifications in {span:.2f} s: {total / span:.0f}/s; "
              f"server RSS {rss_kib(server.pid)} KiB")
    finally:
        server.kill()
        server.wait()
        if gateway:
            gateway.shutdown()


if __name__ == "__main__":
    main()
