//! The load tool end to end: `linechat-load` drives a real linechat server,
//! and its own floor server, over loopback, and its JSON report adds up.
//! Small and short on purpose: this proves the tool works, it measures
//! nothing (benchmarks live in scripts/).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Server;
use common::tls::TlsServer;
use serde_json::Value;

const LOAD: &str = env!("CARGO_BIN_EXE_linechat-load");
/// Handshake, one second of load, the drain: far less than this.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// A second of measured load after a short warm-up.
const SHORT_RUN: [&str; 4] = ["--duration", "1", "--warmup", "0.2"];
/// The latency scenario at 40 messages/s.
const LATENCY_AT_40: [&str; 3] = ["latency", "--rate", "40"];

/// Runs a short scenario (`args` names it and its target) to completion,
/// killing it past `RUN_LIMIT`, and returns the `metrics` object of its
/// JSON report.
fn run_load(args: &[&str], json: &Path) -> serde_json::Map<String, Value> {
    let mut child = Command::new(LOAD)
        .args(args)
        .args(SHORT_RUN)
        .arg("--json")
        .arg(json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting linechat-load");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        let _ = tx.send(text);
    });
    // stderr closes when the tool exits, so this waits for the exit.
    let Ok(errors) = rx.recv_timeout(RUN_LIMIT) else {
        let _ = child.kill();
        panic!("linechat-load ran past {RUN_LIMIT:?}");
    };
    let status = child.wait().expect("waiting for linechat-load");
    assert!(status.success(), "linechat-load failed: {errors}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("JSON report")).unwrap();
    report["metrics"].as_object().expect("metrics").clone()
}

fn num(m: &serde_json::Map<String, Value>, key: &str) -> f64 {
    m.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("metric {key} missing in {m:?}"))
}

/// A run in which nothing went wrong: no error replies, no lost client,
/// some traffic, and one latency sample per counted delivery (deliveries of
/// warm-up publishes, or of publishes after the window, count for neither).
fn assert_clean_run(m: &serde_json::Map<String, Value>) {
    // Every counted publish was answered and delivered before the tool quit.
    assert_eq!(m.get("settled"), Some(&Value::Bool(true)), "{m:?}");
    assert_eq!(num(m, "errors"), 0.0, "{m:?}");
    assert_eq!(num(m, "disconnects"), 0.0, "{m:?}");
    assert!(num(m, "published") >= 10.0, "{m:?}");
    assert_eq!(num(m, "latency_samples"), num(m, "delivered"), "{m:?}");
    let (p50, max) = (num(m, "latency_p50_us"), num(m, "latency_max_us"));
    assert!(p50 > 0.0 && p50 <= max, "p50 {p50}, max {max}");
}

/// Checks of a one-room run (fanout or latency) with `subs` subscribers:
/// every publish counted reaches every subscriber exactly once, the drain
/// after the window having waited for the last ones.
fn assert_broadcast_report(m: &serde_json::Map<String, Value>, subs: f64) {
    assert_clean_run(m);
    assert_eq!(num(m, "subscribers_ready"), subs);
    assert_eq!(num(m, "delivered"), num(m, "published") * subs, "{m:?}");
    assert_eq!(num(m, "deliveries_per_publish"), subs, "{m:?}");
}

/// What STATS read back after a run must agree with: the server saw at
/// least what the load tool counted, and dropped no one.
fn assert_server_side(m: &serde_json::Map<String, Value>) {
    assert!(num(m, "server.messages_in") >= num(m, "published"));
    assert!(num(m, "server.deliveries_out") >= num(m, "delivered"));
    assert_eq!(num(m, "server.slow_consumer_drops"), 0.0);
    assert!(num(m, "server_rss_end_kib") > 0.0);
}

#[test]
fn latency_scenario_against_linechat_counts_every_delivery() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pid = server.pid().to_string();
    let m = run_load(
        &[
            &LATENCY_AT_40[..],
            &[
                "--addr",
                &server.addr,
                "--subscribers",
                "5",
                "--handshake-timeout",
                "20",
                "--server-pid",
                &pid,
            ],
        ]
        .concat(),
        &dir.path().join("latency.json"),
    );
    assert_broadcast_report(&m, 5.0);
    assert_server_side(&m);
}

/// Fanout publishes as fast as the window lets it, so the warm-up's
/// deliveries still arrive inside the window and the window's last
/// publishes are delivered after it: neither may skew the figures.
#[test]
fn fanout_scenario_with_two_publishers_reports_consistent_figures() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pid = server.pid().to_string();
    let m = run_load(
        &[
            "fanout",
            "--subscribers",
            "5",
            "--publishers",
            "2",
            "--window",
            "64",
            "--addr",
            &server.addr,
            "--handshake-timeout",
            "20",
            "--server-pid",
            &pid,
        ],
        &dir.path().join("fanout.json"),
    );
    assert_broadcast_report(&m, 5.0);
    assert_server_side(&m);
}

/// Rooms of three plus direct messages between friends: each counted
/// publish reaches one friend or the two other members of its room.
#[test]
fn rooms_scenario_counts_each_publish_once_per_recipient() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let m = run_load(
        &[
            "rooms",
            "--rooms",
            "2",
            "--room-size",
            "3",
            "--rate",
            "40",
            "--direct-ratio",
            "0.5",
            "--addr",
            &server.addr,
            "--handshake-timeout",
            "20",
        ],
        &dir.path().join("rooms.json"),
    );
    assert_clean_run(&m);
    let (published, delivered) = (num(&m, "published"), num(&m, "delivered"));
    assert!(delivered > published, "some went to rooms: {m:?}");
    assert!(delivered < published * 2.0, "some were direct: {m:?}");
}

/// Every member of two rooms of three publishes into its room: each counted
/// publish reaches the two others, and under `sync` every answered message
/// was committed in the window or just before it; the storage thread's CPU
/// is reported.
#[test]
fn durable_scenario_counts_commits_and_storage_cpu() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pid = server.pid().to_string();
    let m = run_load(
        &[
            "durable",
            "--rooms",
            "2",
            "--room-size",
            "3",
            "--window",
            "4",
            "--addr",
            &server.addr,
            "--handshake-timeout",
            "20",
            "--server-pid",
            &pid,
        ],
        &dir.path().join("durable.json"),
    );
    assert_clean_run(&m);
    let published = num(&m, "published");
    assert_eq!(num(&m, "delivered"), published * 2.0, "{m:?}");
    // The window's first OKs may answer commits made before it opened, and
    // its last commits may be answered after it closed: at most one window
    // (4 per publisher) either way.
    let committed = num(&m, "committed");
    assert!((committed - published).abs() <= 6.0 * 4.0, "{m:?}");
    // CPU time comes in clock ticks (10 ms), so a short run may show none.
    for cpu in ["server_cpu_storage_pct", "server_cpu_all_pct"] {
        assert!(m.get(cpu).is_some_and(Value::is_f64), "{cpu}: {m:?}");
    }
}

/// The WebSocket and TLS wires (`--proto ws`, `--tls-ca`) carry both
/// broadcast scenarios: every counted publish reaches every subscriber once,
/// with STATS asked over the plain listener, and no session broke its
/// wire's protocol.
#[test]
fn broadcast_scenarios_run_over_websocket_and_tls() {
    let s = TlsServer::start(&["--ws-listen", "127.0.0.1:0", "--wss-listen", "127.0.0.1:0"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = s.cert_path().display().to_string();
    let server = &s.server;
    let (ws, wss) = (server.ws_addr.as_deref(), server.wss_addr.as_deref());
    let tls = server.tls_addr.as_deref();
    for (scenario, proto, addr, ca) in [
        ("fanout", "ws", ws, None),
        ("latency", "ws", ws, None),
        ("fanout", "tls", tls, Some(&ca)),
        ("latency", "linechat", tls, Some(&ca)),
        ("fanout", "ws", wss, Some(&ca)),
    ] {
        let addr = addr.expect("listener");
        let mut args = vec![
            scenario,
            "--proto",
            proto,
            "--addr",
            addr,
            "--stats-addr",
            &server.addr,
            "--subscribers",
            "4",
            "--handshake-timeout",
            "20",
        ];
        if scenario == "latency" {
            args.extend(["--rate", "40"]);
        }
        if let Some(ca) = ca {
            args.extend(["--tls-ca", ca]);
        }
        let json = dir.path().join(format!("{scenario}-{proto}-{addr}.json"));
        let m = run_load(&args, &json);
        assert_broadcast_report(&m, 4.0);
        for broken in ["server.closed_ws_error", "server.closed_tls_error"] {
            assert_eq!(num(&m, broken), 0.0, "{scenario} over {proto} at {addr}");
        }
    }
}

/// Kills the floor server when the test ends, pass or fail.
struct Floor(Child);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn floor_server_serves_the_floor_protocol() {
    let mut floor = Floor(
        Command::new(LOAD)
            .args(["floor-server", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the floor server"),
    );
    // Kept open to the end, so the server never writes to a closed pipe.
    let mut stderr = BufReader::new(floor.0.stderr.take().unwrap());
    let mut first = String::new();
    stderr
        .read_line(&mut first)
        .expect("reading the listen line");
    let addr = first
        .trim()
        .strip_prefix("floor-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let m = run_load(
        &[
            &LATENCY_AT_40[..],
            &["--proto", "floor", "--addr", &addr, "--subscribers", "4"],
        ]
        .concat(),
        &dir.path().join("floor.json"),
    );
    assert_broadcast_report(&m, 4.0);
}

/// Runs the load tool with `args`, which it must refuse before connecting
/// (exit status 2); returns what it said.
fn refusal(args: &[&str]) -> String {
    let out = Command::new(LOAD)
        .args(args)
        .output()
        .expect("running linechat-load");
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    String::from_utf8_lossy(&out.stderr).trim_end().to_string()
}

#[test]
fn the_load_tool_refuses_targets_off_loopback() {
    let err = refusal(&["latency", "--addr", "192.0.2.1:7000", "--duration", "1"]);
    assert!(
        err.contains("only loopback addresses may be targeted"),
        "{err}"
    );
}

#[test]
fn proto_tls_without_a_certificate_to_trust_is_refused() {
    assert_eq!(
        refusal(&["fanout", "--proto", "tls", "--addr", "127.0.0.1:9"]),
        "--proto tls needs --tls-ca (the server's certificate, PEM)"
    );
}

/// The durable brokers' adapters give each client one role, so they run
/// the broadcast scenarios only; the others stop before connecting.
#[test]
fn durable_broker_protocols_refuse_the_rooms_and_connections_scenarios() {
    for (scenario, proto) in [("rooms", "redis-streams"), ("connections", "nats-js")] {
        let out = Command::new(LOAD)
            .args([scenario, "--proto", proto, "--addr", "127.0.0.1:9"])
            .output()
            .expect("running linechat-load");
        assert_eq!(out.status.code(), Some(1), "{scenario} {proto}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            format!("error: --proto {proto} runs only the fanout and latency scenarios")
        );
    }
}

/// `--also-addr` shares the clients out over several servers, round robin
/// (as over the nodes of a cluster).
#[test]
fn clients_are_shared_out_over_every_address() {
    let (first, second) = (Server::start(), Server::start());
    let dir = tempfile::tempdir().unwrap();
    let m = run_load(
        &[
            "connections",
            "--connections",
            "10",
            "--room-size",
            "5",
            "--hold",
            "0",
            "--addr",
            &first.addr,
            "--also-addr",
            &second.addr,
        ],
        &dir.path().join("connections.json"),
    );
    assert_eq!(num(&m, "sessions_ready"), 10.0);
    // Five load clients and this STATS client on the second server.
    assert_eq!(second.user("observer").stat("connections_accepted"), 6);
}
