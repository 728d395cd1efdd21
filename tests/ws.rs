//! The WebSocket listener over real sockets: a tungstenite client and a
//! plain TCP client share a room; `/healthz` and `/metrics` answer over a
//! raw TcpStream (the metrics page is parsed); oversized frames, stalled
//! handshakes, garbage and request-smuggling shapes each get a refusal and a
//! close, counted, while another session goes on.

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::{TlsServer, TlsStream};
use common::{Client, Server, TIMEOUT, Wire, msg};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// A WebSocket client as a byte stream: data frame payloads are read as one
/// stream (the server's framing, see protocol.md), and each write is one
/// text frame (binary if the bytes are not UTF-8, as attachment bodies).
struct WsWire<S: Wire = TcpStream> {
    ws: WebSocket<S>,
    pending: Vec<u8>,
    /// The server's close frame, once it came.
    close: Option<Option<CloseFrame>>,
}

impl<S: Wire> Wire for WsWire<S> {
    fn socket(&self) -> &TcpStream {
        self.ws.get_ref().socket()
    }
}

impl<S: Wire> Read for WsWire<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.pending.extend_from_slice(t.as_bytes()),
                Ok(Message::Binary(b)) => self.pending.extend_from_slice(&b),
                Ok(Message::Close(frame)) => {
                    self.close = Some(frame);
                    return Ok(0);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) => return Err(e),
                // A drop may cut the stream before its close frame: the
                // socket was full, which is why it was dropped.
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                ) => return Ok(0),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl<S: Wire> Write for WsWire<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let message = match std::str::from_utf8(buf) {
            Ok(text) => Message::text(text),
            Err(_) => Message::binary(buf.to_vec()),
        };
        self.ws.send(message).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ws.flush().map_err(io::Error::other)
    }
}

fn ws_server(extra: &[&str]) -> Server {
    let mut args = vec!["--ws-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::with_args(&args)
}

fn ws_addr(s: &Server) -> &str {
    s.ws_addr.as_deref().expect("a WebSocket listener")
}

/// A WebSocket client that has upgraded and read the greeting.
fn ws_client(s: &Server) -> Client<WsWire> {
    let tcp = TcpStream::connect(ws_addr(s)).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    upgrade(tcp, &format!("ws://{}/", ws_addr(s)))
}

/// Upgrades `stream` to WebSocket at `url` and reads the greeting.
fn upgrade<S: Wire>(stream: S, url: &str) -> Client<WsWire<S>> {
    let (ws, response) = tungstenite::client::client(url, stream).expect("upgrade");
    assert_eq!(response.status(), 101);
    let mut c = Client::over(WsWire {
        ws,
        pending: Vec::new(),
        close: None,
    });
    let hello = c.line();
    assert!(hello.starts_with("HELLO linechat "), "{hello}");
    c
}

/// A raw HTTP exchange: sends `request`, reads until the server closes.
fn http(s: &Server, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(ws_addr(s)).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.write_all(request).expect("write");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).expect("read to the close");
    String::from_utf8(answer).expect("a text answer")
}

/// The status line and the body of an HTTP answer.
fn split_answer(answer: &str) -> (&str, &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or(""), body)
}

#[test]
fn a_websocket_client_and_a_plain_client_talk_in_one_room() {
    let s = ws_server(&[]);
    let mut alice = ws_client(&s);
    alice.send("REGISTER alice password1");
    alice.expect("OK REGISTER alice");
    let mut bob = s.user("bob");
    alice.ignored.push("RECEIPT");
    bob.ignored.push("RECEIPT");
    alice.send("JOIN #mix");
    alice.expect("OK JOIN #mix created");
    bob.send("JOIN #mix");
    bob.expect("OK JOIN #mix joined");
    alice.expect("JOINED #mix bob");

    alice.send("SAY #mix hello from a browser");
    alice.expect_prefix("OK SAY #mix 1 ");
    assert_eq!(msg(&bob.line()), "MSG #mix 1 alice hello from a browser");
    bob.send("SAY #mix hello from plain TCP");
    bob.expect_prefix("OK SAY #mix 2 ");
    assert_eq!(msg(&alice.line()), "MSG #mix 2 bob hello from plain TCP");

    // One text frame may carry several lines; its end ends the last one.
    alice.send_raw(b"PING one\nPING two\nPING three");
    alice.expect("OK PONG one");
    alice.expect("OK PONG two");
    alice.expect("OK PONG three");

    // A ping frame is answered with a pong carrying the same payload.
    alice
        .stream
        .ws
        .send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    alice.send("PING after-the-ping");
    // The pong and the text frame may come in either order.
    let mut answered = false;
    let pong = loop {
        match alice.stream.ws.read().expect("a frame within the timeout") {
            Message::Pong(p) => break p,
            Message::Text(t) => {
                assert_eq!(t.as_str(), "OK PONG after-the-ping\n");
                answered = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    if !answered {
        alice.expect("OK PONG after-the-ping");
    }

    // QUIT: the answer, then a close frame with the reason.
    alice.send("QUIT");
    alice.expect("OK QUIT bye");
    assert!(alice.until_closed().is_empty());
    let close = alice.stream.close.clone().flatten().expect("a close frame");
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(close.reason.as_str(), "quit");
    bob.expect_prefix("PRESENCE alice offline ");
    assert_eq!(bob.stat("closed_quit"), 1);
}

#[test]
fn healthz_and_404_answer_and_close() {
    let s = ws_server(&[]);
    let answer = http(&s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(split_answer(&answer), ("HTTP/1.1 200 OK", "ok\n"));
    let answer = http(&s, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        split_answer(&answer),
        ("HTTP/1.1 404 Not Found", "not found\n")
    );
    let mut plain = s.user("plain");
    assert_eq!(plain.stat("closed_http_served"), 2);
    // HTTP exchanges are counted apart from sessions.
    assert_eq!(plain.stat("http_requests"), 2);
    assert_eq!(plain.stat("sessions"), 1);
}

/// The value of header `name` in an HTTP answer's head.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = answer.split_once("\r\n\r\n")?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(": ")?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// GETs `target`, one of the browser client's files, and checks its answer:
/// 200, `content_type`, every byte its Content-Length promises, the policy.
/// Returns the body.
fn page_file(s: &Server, target: &str, content_type: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = http(s, request.as_bytes());
    let (status, body) = split_answer(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&answer, "Content-Type"), Some(content_type));
    assert_eq!(
        header(&answer, "Content-Length"),
        Some(&*body.len().to_string())
    );
    // Only the page's own files run, and it talks only to WebSocket URLs.
    let policy = header(&answer, "Content-Security-Policy").expect("a policy");
    assert!(policy.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"));
    assert!(policy.contains("connect-src 'self' ws: wss:;"));
    assert_eq!(header(&answer, "X-Content-Type-Options"), Some("nosniff"));
    body.to_string()
}

#[test]
fn the_browser_client_is_served_whole_with_its_types_and_policy() {
    let s = ws_server(&[]);
    let html = page_file(&s, "/", "text/html; charset=utf-8");
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/app.css">"#));

    let js = page_file(&s, "/app.js", "text/javascript; charset=utf-8");
    assert!(js.contains("new WebSocket("));
    assert!(js.trim_end().ends_with("connect();"));
    // Server text reaches the page as text, never as markup.
    assert!(!js.contains("innerHTML"));

    let css = page_file(&s, "/app.css?v=1", "text/css; charset=utf-8");
    assert!(css.contains("#messages"));

    let mut plain = s.user("plain");
    assert_eq!(plain.stat("closed_http_served"), 3);
}

/// Parses a Prometheus text page: every sample line is `name{labels} value`
/// with a number for the value, and every sample's family has a TYPE line.
fn parse_metrics(page: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = Vec::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_string());
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let family = key.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                family
                    .strip_suffix(s)
                    .filter(|f| typed.iter().any(|t| t == f))
            })
            .unwrap_or(family);
        assert!(typed.iter().any(|t| t == family), "no TYPE for {line}");
        assert!(
            samples.insert(key.to_string(), value).is_none(),
            "twice: {line}"
        );
    }
    samples
}

#[test]
fn metrics_are_prometheus_text_with_the_counters() {
    let s = ws_server(&[]);
    let mut alice = ws_client(&s);
    alice.send("REGISTER alice password1");
    alice.expect("OK REGISTER alice");
    alice.send("JOIN #m");
    alice.expect("OK JOIN #m created");
    let mut bob = s.user("bob");
    bob.send("JOIN #m");
    bob.expect("OK JOIN #m joined");
    alice.expect("JOINED #m bob");
    bob.send("SAY #m counted");
    bob.expect_prefix("OK SAY #m 1 ");
    assert_eq!(msg(&alice.line()), "MSG #m 1 bob counted");
    let _ = http(&s, b"GET /healthz HTTP/1.1\r\n\r\n");

    let answer = http(&s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{answer}"
    );
    let (status, body) = split_answer(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let m = parse_metrics(body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {body}"));
    // Two sessions, alice (ws) and bob (tcp); this request's connection is
    // an HTTP one, and it and the /healthz before it are HTTP requests.
    assert_eq!(get("linechat_sessions"), 2.0);
    assert_eq!(get("linechat_sessions_by_front{front=\"tcp\"}"), 1.0);
    assert_eq!(get("linechat_sessions_by_front{front=\"tls\"}"), 0.0);
    assert_eq!(get("linechat_sessions_by_front{front=\"ws\"}"), 1.0);
    assert_eq!(get("linechat_http_connections"), 1.0);
    assert_eq!(get("linechat_http_requests"), 2.0);
    assert_eq!(get("linechat_messages_in"), 1.0);
    assert!(get("linechat_deliveries_total") >= 1.0);
    assert_eq!(get("linechat_closed_total{reason=\"http_served\"}"), 1.0);
    assert_eq!(get("linechat_closed_total{reason=\"quit\"}"), 0.0);
    // The commit histogram: cumulative, ending in +Inf = count, which saw
    // at least the two registrations, the room and the message.
    let count = get("linechat_commit_latency_seconds_count");
    assert!(count >= 4.0, "{count}");
    assert_eq!(
        get("linechat_commit_latency_seconds_bucket{le=\"+Inf\"}"),
        count
    );
    assert_cumulative(&m, "linechat_commit_latency_seconds");
    assert!(get("linechat_commit_latency_seconds_sum") > 0.0);
    // The delivery histogram saw bob's message reach alice's socket (and
    // its receipt, if any, reach bob's): one or two deliveries.
    let delivered = get("linechat_delivery_latency_seconds_count");
    assert!((1.0..=2.0).contains(&delivered), "{delivered}");
    assert_eq!(
        get("linechat_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
        delivered
    );
    assert_cumulative(&m, "linechat_delivery_latency_seconds");
}

/// The buckets of histogram `name` never decrease as `le` grows.
fn assert_cumulative(m: &HashMap<String, f64>, name: &str) {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            Some((le.parse().ok()?, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 5, "{name}: {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
}

/// Each bad request is refused with its status and closed, counted, while a
/// plain session goes on.
#[test]
fn bad_requests_are_refused_and_closed() {
    let s = ws_server(&["--ws-max-request", "1024"]);
    let mut plain = s.user("plain");
    let long_header = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(2000));
    let many_headers = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(40));
    let cases: [(&[u8], &str); 7] = [
        (b"\x16\x03\x01garbage\r\n\r\n", "400 Bad Request"),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
            "400 Bad Request",
        ),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400 Bad Request",
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "400 Bad Request",
        ),
        (b"POST /metrics HTTP/1.1\r\n\r\n", "405 Method Not Allowed"),
        (
            long_header.as_bytes(),
            "431 Request Header Fields Too Large",
        ),
        (
            many_headers.as_bytes(),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (k, (request, status)) in cases.iter().enumerate() {
        let answer = http(&s, request);
        let (line, _) = split_answer(&answer);
        assert_eq!(line, format!("HTTP/1.1 {status}"), "case {k}");
        plain.send(&format!("PING after-{k}"));
        plain.expect(&format!("OK PONG after-{k}"));
    }
    // An upgrade without its key is no upgrade.
    let answer = http(
        &s,
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(split_answer(&answer).0, "HTTP/1.1 400 Bad Request");
    assert_eq!(plain.stat("closed_bad_request"), 8);
    assert_eq!(plain.stat("sessions"), 1);
    // The listener goes on upgrading.
    let mut good = ws_client(&s);
    good.send("PING still-upgrading");
    good.expect("OK PONG still-upgrading");
}

#[test]
fn an_oversized_frame_gets_close_1009_and_others_go_on() {
    let s = ws_server(&["--ws-max-frame", "1024"]);
    let mut plain = s.user("plain");
    let mut big = ws_client(&s);
    big.send_raw("x".repeat(2000).as_bytes());
    assert!(big.until_closed().is_empty());
    let close = big.stream.close.clone().flatten().expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(close.reason.as_str(), "frame over the size limit");
    plain.send("PING still-here");
    plain.expect("OK PONG still-here");
    assert_eq!(plain.stat("closed_ws_frame_too_large"), 1);
    // A frame at the limit is taken (a line's worth of PINGs).
    let mut fits = ws_client(&s);
    let pings = "PING p\n".repeat(1024 / 7);
    fits.send_raw(pings.as_bytes());
    for _ in 0..1024 / 7 {
        fits.expect("OK PONG p");
    }
}

#[test]
fn a_request_that_never_completes_is_closed_at_the_deadline() {
    let s = ws_server(&["--ws-handshake-timeout", "1"]);
    let mut done = ws_client(&s);
    let started = Instant::now();
    let mut stalled = Client::connect_raw(ws_addr(&s));
    stalled.send_raw(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n");
    assert_eq!(stalled.read_to_eof(), 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "closed after {waited:?}, before the deadline"
    );
    done.send("PING after-the-deadline");
    done.expect("OK PONG after-the-deadline");
    let mut plain = s.user("plain");
    assert_eq!(plain.stat("closed_ws_handshake_timeout"), 1);
}

/// An attachment goes up as a binary frame after its ATTACH line and comes
/// back from FETCH as frame payloads: binary where the bytes are not UTF-8.
#[test]
fn attachments_travel_as_binary_frames() {
    let s = ws_server(&[]);
    let mut alice = ws_client(&s);
    alice.ignored.push("RECEIPT");
    alice.send("REGISTER alice password1");
    alice.expect("OK REGISTER alice");
    alice.send("JOIN #files");
    alice.expect("OK JOIN #files created");
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    alice.send("ATTACH #files blob.bin application/octet-stream 3000");
    alice.send_raw(&body);
    let ok = alice.expect_prefix("OK ATTACH #files 1 ");
    let id = ok.rsplit(' ').next().unwrap().to_string();
    alice.send(&format!("FETCH {id}"));
    alice.expect(&format!("BLOB {id} 3000 application/octet-stream"));
    assert_eq!(alice.read_raw(3000), body);
    assert_eq!(alice.line(), "", "a LF ends the body");
    alice.expect(&format!("OK FETCH {id}"));
}

/// wss: the same protocol inside TLS, beside a ws and a plain client; a
/// wss client that sends garbage instead of a ClientHello is a TLS error.
#[test]
fn a_wss_client_talks_with_ws_and_plain_clients() {
    let s = TlsServer::start(&["--ws-listen", "127.0.0.1:0", "--wss-listen", "127.0.0.1:0"]);
    let wss_addr = s.server.wss_addr.clone().expect("a wss listener");
    let tcp = TcpStream::connect(&wss_addr).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = ClientConnection::new(s.client_config.clone(), name).unwrap();
    let stream: TlsStream = StreamOwned::new(tls, tcp);
    let mut alice = upgrade(stream, &format!("wss://{wss_addr}/"));
    alice.ignored.push("RECEIPT");
    alice.send("REGISTER alice password1");
    alice.expect("OK REGISTER alice");
    let mut bob = ws_client(&s.server);
    bob.ignored.push("RECEIPT");
    bob.send("REGISTER bob password1");
    bob.expect("OK REGISTER bob");
    let mut carol = s.server.user("carol");
    carol.ignored.push("RECEIPT");
    bob.send("JOIN #w");
    bob.expect("OK JOIN #w created");
    carol.send("JOIN #w");
    carol.expect("OK JOIN #w joined");
    bob.expect("JOINED #w carol");
    alice.send("JOIN #w");
    alice.expect("OK JOIN #w joined");
    bob.expect("JOINED #w alice");
    carol.expect("JOINED #w alice");
    alice.send("SAY #w over wss");
    alice.expect_prefix("OK SAY #w 1 ");
    assert_eq!(msg(&bob.line()), "MSG #w 1 alice over wss");
    assert_eq!(msg(&carol.line()), "MSG #w 1 alice over wss");
    carol.send("SAY #w over tcp");
    carol.expect_prefix("OK SAY #w 2 ");
    assert_eq!(msg(&alice.line()), "MSG #w 2 carol over tcp");

    let mut garbage = Client::connect_raw(&wss_addr);
    garbage.send_raw(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(garbage.try_line(TIMEOUT), None);
    assert_eq!(carol.stat("closed_tls_error"), 1);
    let answer = http(&s.server, b"GET /metrics HTTP/1.1\r\n\r\n");
    let m = parse_metrics(split_answer(&answer).1);
    assert_eq!(m["linechat_sessions_by_front{front=\"wss\"}"], 1.0);
    assert_eq!(m["linechat_sessions_by_front{front=\"ws\"}"], 1.0);
    assert_eq!(m["linechat_sessions_by_front{front=\"tcp\"}"], 1.0);
}

/// A WebSocket reader that stops reading is dropped at `--max-outbox` like a
/// TCP one: what the stream holds beside the outbox is one frame at most.
#[test]
fn a_websocket_reader_that_stops_is_dropped_as_a_slow_consumer() {
    let s = ws_server(&["--max-outbox", "65536", "--durability", "async"]);
    let mut parked = ws_client(&s);
    parked.send("REGISTER parked password1");
    parked.expect("OK REGISTER parked");
    parked.send("JOIN #busy");
    parked.expect("OK JOIN #busy created");
    let mut sender = s.user("sender");
    sender
        .ignored
        .extend(["RECEIPT", "PRESENCE parked offline"]);
    sender.send("JOIN #busy");
    sender.expect("OK JOIN #busy joined");
    // `parked` reads no more. 4000-byte messages, 100 at a time, until it is
    // dropped; 40 batches (16 MB) are far past the outbox and the kernel's
    // buffers.
    let text = "z".repeat(4000);
    let batch: String = (0..100).map(|_| format!("SAY #busy {text}\n")).collect();
    let mut dropped = false;
    for _ in 0..40 {
        sender.send_raw(batch.as_bytes());
        for _ in 0..100 {
            sender.expect_prefix("OK SAY #busy ");
        }
        if sender.stat("closed_slow_consumer") == 1 {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "never dropped");
    assert_eq!(sender.stat("slow_consumer_drops"), 1);
    // Its stream ends after what the kernel had buffered.
    let lines = parked.until_closed();
    assert!(
        lines.iter().all(|l| l.starts_with("MSG #busy ")
            || l.starts_with("RECEIPT")
            || l.starts_with("JOINED")),
        "{:?}",
        lines.last()
    );
}
