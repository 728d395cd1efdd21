//! The TLS listener over real sockets: a rustls client and a plain TCP
//! client share rooms, a TLS reader that falls behind still gets every line,
//! and bad or stalled handshakes are closed and counted while other sessions
//! go on. The certificate is made at run time.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::{TlsServer, TlsStream};
use common::{Client, TIMEOUT, msg};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

impl TlsServer {
    fn tls_addr(&self) -> &str {
        self.server.tls_addr.as_deref().expect("a TLS listener")
    }

    /// A TLS client that has done its handshake and read the greeting.
    fn tls_client(&self) -> Client<TlsStream> {
        self.tls_client_with(TcpStream::connect(self.tls_addr()).expect("connect"))
    }

    /// A TLS client whose socket takes little at a time, so that what the
    /// server sends it backs up in the server as soon as it stops reading.
    fn narrow_tls_client(&self) -> Client<TlsStream> {
        use socket2::{Domain, Socket, Type};
        let addr: SocketAddr = self.tls_addr().parse().unwrap();
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).expect("connect");
        self.tls_client_with(socket.into())
    }

    fn tls_client_with(&self, tcp: TcpStream) -> Client<TlsStream> {
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = ClientConnection::new(Arc::clone(&self.client_config), name).unwrap();
        let mut c = Client::over(StreamOwned::new(tls, tcp));
        let hello = c.line();
        assert!(hello.starts_with("HELLO linechat "), "{hello}");
        c
    }

    /// A TLS client registered as `user`.
    fn tls_user(&self, mut c: Client<TlsStream>, user: &str) -> Client<TlsStream> {
        c.send(&format!("REGISTER {user} password1"));
        c.expect(&format!("OK REGISTER {user}"));
        c
    }
}

/// A TLS client creates `room` and a plain one, `plain_name`, joins it;
/// receipts are ignored on both.
fn share_room(tls: &mut Client<TlsStream>, plain: &mut Client, plain_name: &str, room: &str) {
    tls.ignored.push("RECEIPT");
    plain.ignored.push("RECEIPT");
    tls.send(&format!("JOIN {room}"));
    tls.expect(&format!("OK JOIN {room} created"));
    plain.send(&format!("JOIN {room}"));
    plain.expect(&format!("OK JOIN {room} joined"));
    tls.expect(&format!("JOINED {room} {plain_name}"));
}

#[test]
fn a_tls_client_and_a_plain_client_talk_in_one_room() {
    let s = TlsServer::start(&[]);
    let mut alice = s.tls_user(s.tls_client(), "alice");
    let mut bob = s.server.user("bob");
    share_room(&mut alice, &mut bob, "bob", "#mix");

    alice.send("SAY #mix hello from TLS");
    alice.expect_prefix("OK SAY #mix 1 ");
    assert_eq!(msg(&bob.line()), "MSG #mix 1 alice hello from TLS");
    bob.send("SAY #mix hello from plain TCP");
    bob.expect_prefix("OK SAY #mix 2 ");
    assert_eq!(msg(&alice.line()), "MSG #mix 2 bob hello from plain TCP");

    // The TLS session quits as a TCP one does: the answer, then the close.
    alice.send("QUIT");
    alice.expect("OK QUIT bye");
    assert!(alice.until_closed().is_empty());
    bob.expect_prefix("PRESENCE alice offline ");
    assert_eq!(bob.stat("closed_quit"), 1);
}

/// More than the kernel and rustls hold (64 KiB per session) waits in the
/// outbox while the reader is not reading; once it reads, every line comes,
/// in order.
#[test]
fn a_tls_reader_that_falls_behind_gets_every_line_in_order() {
    // Outbox limits high enough for the backlog: this is about TLS, not
    // about slow consumers.
    let s = TlsServer::start(&["--max-outbox", "8000000", "--outbox-soft-limit", "0"]);
    let mut reader = s.tls_user(s.narrow_tls_client(), "reader");
    let mut writer = s.server.user("writer");
    share_room(&mut reader, &mut writer, "writer", "#bulk");

    // About 5 MB: more than the kernel buffers of a loopback connection
    // (`tcp_wmem` lets a send buffer grow to 4 MiB) and rustls' 64 KiB hold.
    const COUNT: u64 = 2500;
    let text = "x".repeat(2000);
    for n in 1..=COUNT {
        writer.send(&format!("SAY #bulk {n} {text}"));
        writer.expect_prefix(&format!("OK SAY #bulk {n} "));
    }
    // Every message is queued for the reader by now (before each OK SAY);
    // some wait in its outbox: rustls' buffer is full and the socket blocked.
    assert!(writer.stat("outbox_bytes_queued") > 0);
    for n in 1..=COUNT {
        assert_eq!(
            msg(&reader.line()),
            format!("MSG #bulk {n} writer {n} {text}")
        );
    }
    assert!(reader.sync().is_empty());
    assert_eq!(writer.stat("slow_consumer_drops"), 0);
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_and_counted() {
    let s = TlsServer::start(&[]);
    let mut plain = s.server.user("plain");
    let mut bad = Client::connect_raw(s.tls_addr());
    bad.send("REGISTER mallory password1");
    // Whatever came back (a TLS alert), it is not a line, and the
    // connection is closed.
    assert_eq!(bad.try_line(TIMEOUT), None);
    // The plain session is untouched, and the close is counted.
    plain.send("PING still-here");
    plain.expect("OK PONG still-here");
    assert_eq!(plain.stat("closed_tls_error"), 1);
    assert_eq!(plain.stat("sessions"), 1);
    // The listener goes on taking TLS clients.
    let mut good = s.tls_client();
    good.send("PING tls");
    good.expect("OK PONG tls");
}

#[test]
fn a_handshake_that_never_finishes_is_closed_at_the_deadline() {
    let s = TlsServer::start(&["--tls-handshake-timeout", "1"]);
    // Handshaken before the stalled one connects: past its own deadline by
    // the time the stalled one is closed.
    let mut done = s.tls_client();
    let started = Instant::now();
    let mut stalled = Client::connect_raw(s.tls_addr());
    stalled.read_to_eof();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "closed after {waited:?}, before the deadline"
    );
    // The finished handshake is not held to the deadline.
    done.send("PING after-the-deadline");
    done.expect("OK PONG after-the-deadline");
    let mut plain = s.server.user("plain");
    assert_eq!(plain.stat("closed_tls_handshake_timeout"), 1);
    assert_eq!(plain.stat("closed_tls_error"), 0);
}

/// Refusals at accept are a plain close on the TLS listener (a refusal line
/// would come before any handshake), counted under the same reason.
#[test]
fn a_refusal_on_the_tls_listener_is_a_plain_close() {
    let s = TlsServer::start(&["--max-connections", "1"]);
    let mut plain = s.server.user("plain");
    let mut refused = Client::connect_raw(s.tls_addr());
    assert_eq!(refused.read_to_eof(), 0, "no bytes before the close");
    assert_eq!(plain.stat("closed_server_full"), 1);
}

/// What a run of the server binary that should fail at startup did.
struct Refused {
    succeeded: bool,
    stderr: String,
    /// Whether it got as far as creating its database.
    opened_storage: bool,
}

/// Runs the server binary with `args`, killed after the timeout if it does
/// not exit by itself.
fn run_server(args: &[&str]) -> Refused {
    let data = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .arg(env!("CARGO_BIN_EXE_linechat"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running linechat");
    Refused {
        succeeded: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        opened_storage: data.path().join("linechat.db").exists(),
    }
}

#[test]
fn tls_flags_come_all_three_or_the_server_does_not_start() {
    let run = run_server(&["--tls-listen", "127.0.0.1:0"]);
    assert!(!run.succeeded);
    let err = run.stderr;
    assert!(
        err.contains("required arguments were not provided")
            && err.contains("--tls-cert")
            && err.contains("--tls-key"),
        "{err}"
    );
    let run = run_server(&["--tls-cert", "cert.pem", "--tls-key", "key.pem"]);
    assert!(!run.succeeded);
    assert!(run.stderr.contains("--tls-listen"), "{}", run.stderr);
}

#[test]
fn an_unreadable_certificate_stops_the_start_before_storage_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem").display().to_string();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.display().to_string();
    let tls_flags = |cert: &str| {
        let run = run_server(&[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            cert,
        ]);
        assert!(!run.succeeded);
        assert!(!run.opened_storage);
        run.stderr
    };
    let err = tls_flags(&missing);
    assert!(
        err.starts_with(&format!("linechat: TLS certificate {missing}: ")),
        "{err}"
    );
    assert_eq!(
        tls_flags(&empty).trim_end(),
        format!("linechat: TLS certificate {empty}: no CERTIFICATE block in the file")
    );
}
