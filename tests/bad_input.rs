//! Hostile and broken input over real sockets: each session gets exact
//! answers and goes on, and nobody else notices.
//!
//! One server takes all of it, in turn, while two bystanders sit in a room;
//! at the end they still chat and the process is still alive.
//!
//! Bad input on the TLS listener (garbage instead of a ClientHello, a
//! handshake that never finishes) is in `tls.rs`, which needs a certificate.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, Server, msg};

const TOO_LONG: &str = "ERR LINE_TOO_LONG line longer than the limit; it was discarded";
const BAD_UTF8: &str = "ERR BAD_UTF8 line is not valid UTF-8";
const UNKNOWN: &str = "ERR UNKNOWN_COMMAND unknown command; try HELP";
const BAD_TEXT: &str = "ERR BAD_TEXT message text may not contain control characters";
const BAD_TARGET: &str = "ERR BAD_TARGET a conversation is #room or @user";
const BAD_ROOM: &str =
    "ERR BAD_ROOM room names are '#' and 1-32 characters: letters, digits, '_' or '-'";
const BAD_USERNAME: &str = "ERR BAD_USERNAME user names are 1-32 characters: letters, digits, '_' or '-', starting with a letter";
const NO_SUCH_USER: &str = "ERR NO_SUCH_USER no such user";

fn usage(verb: &str) -> String {
    format!("ERR BAD_ARGS wrong arguments for {verb}; try HELP {verb}")
}

/// Sends each raw line (LF appended) and expects the matching answer.
fn table(c: &mut Client, cases: &[(&[u8], &str)]) {
    for (line, want) in cases {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        c.send_raw(&bytes);
        assert_eq!(
            c.line(),
            *want,
            "answer to {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

fn alive(c: &mut Client, token: &str) {
    c.send(&format!("PING {token}"));
    c.expect(&format!("OK PONG {token}"));
}

#[test]
fn bad_input_hurts_neither_the_server_nor_others() {
    let s = Server::start();
    let [mut alice, mut bob] = s.room_with("#lobby", ["alice", "bob"]);
    // Receipts are tested elsewhere; here they only interleave.
    alice.ignored.push("RECEIPT ");
    bob.ignored.push("RECEIPT ");
    // The troublemaker is a member too, so anything it got through would
    // reach the bystanders.
    let mut mallory = s.user("mallory");
    mallory.send("JOIN #lobby");
    mallory.expect("OK JOIN #lobby joined");
    alice.expect("JOINED #lobby mallory");
    bob.expect("JOINED #lobby mallory");
    // Something acknowledged before the abuse, to find in history after it.
    bob.send("SAY #lobby before");
    bob.expect_prefix("OK SAY #lobby 1 ");
    assert_eq!(msg(&alice.line()), "MSG #lobby 1 bob before");
    assert_eq!(msg(&mallory.line()), "MSG #lobby 1 bob before");
    let rss_before = s.rss_kib();

    no_bytes_at_all(&s);
    ten_megabytes_without_a_newline(&s);
    longest_line_boundary(&mut mallory);
    nul_bytes(&mut mallory);
    lone_cr(&mut mallory);
    invalid_utf8(&mut mallory);
    ten_thousand_pipelined_pings(&s);
    unknown_verbs(&mut mallory);
    wrong_argument_counts(&mut mallory, &s);
    malformed_names(&mut mallory, &s);
    half_close(&s);
    connection_reset(&s);

    // The bystanders saw none of it, and still chat.
    assert!(alice.sync().is_empty());
    assert!(bob.sync().is_empty());
    alice.send("SAY #lobby still here?");
    alice.expect_prefix("OK SAY #lobby 2 ");
    assert_eq!(msg(&bob.line()), "MSG #lobby 2 alice still here?");
    assert_eq!(msg(&mallory.line()), "MSG #lobby 2 alice still here?");
    bob.send("SAY #lobby yes");
    bob.expect_prefix("OK SAY #lobby 3 ");
    assert_eq!(msg(&alice.line()), "MSG #lobby 3 bob yes");
    assert_eq!(msg(&mallory.line()), "MSG #lobby 3 bob yes");
    alive(&mut mallory, "end");
    // Every acknowledged message is in history.
    alice.send("HISTORY #lobby");
    for (seq, who, text) in [
        (1, "bob", "before"),
        (2, "alice", "still here?"),
        (3, "bob", "yes"),
    ] {
        let l = alice.expect_prefix(&format!("HISTORY #lobby {seq} "));
        assert!(
            l.contains(&format!(" {who} ")) && l.ends_with(&format!(" sent {text}")),
            "{l}"
        );
    }
    alice.expect("OK HISTORY #lobby 3");
    // Memory is back near where it started: nothing of the 10 MB line, the
    // 10,000 pipelined commands or the dropped connections was kept.
    let rss_after = s.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // The process is alive (not exited, not a zombie) and takes new sessions.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", s.pid())).expect("proc stat");
    let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
    assert!(matches!(state, Some("R" | "S")), "server state {state:?}");
    alive(&mut s.client(), "new");
}

fn no_bytes_at_all(s: &Server) {
    // Connect and close without reading the greeting or sending anything.
    for _ in 0..3 {
        drop(TcpStream::connect(&s.addr).unwrap());
    }
    // Read the greeting, then close.
    drop(s.client());
    // Half-close without a byte: the server closes its side after the greeting.
    let mut c = Client::connect_raw(&s.addr);
    c.shutdown_write();
    assert_eq!(
        c.until_closed(),
        [format!(
            "HELLO linechat {} - type HELP for commands",
            env!("CARGO_PKG_VERSION")
        )]
    );
    alive(&mut s.client(), "after-nothing");
}

fn ten_megabytes_without_a_newline(s: &Server) {
    let mut c = s.client();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..10 {
        c.send_raw(&chunk);
    }
    c.send_raw(b"\nPING after-10mb\n");
    c.expect(TOO_LONG);
    c.expect("OK PONG after-10mb");
    assert!(c.sync().is_empty(), "exactly one LINE_TOO_LONG");
}

/// The default limit is 4096 bytes without the line ending.
fn longest_line_boundary(c: &mut Client) {
    let fits = format!("PING {}", "y".repeat(4096 - 5));
    c.send_raw(format!("{fits}\r\n").as_bytes());
    c.expect(&format!("OK PONG {}", "y".repeat(4091)));
    let over = format!("PING {}", "y".repeat(4096 - 4));
    c.send_raw(format!("{over}\n").as_bytes());
    c.expect(TOO_LONG);
    alive(c, "after-boundary");
}

/// NUL is a control character like any other: PING echoes its token as is,
/// names and message text refuse it.
fn nul_bytes(c: &mut Client) {
    table(
        c,
        &[
            (b"PING a\0b", "OK PONG a\0b"),
            (b"SAY #lobby a\0b", BAD_TEXT),
            (b"JOIN #a\0b", BAD_ROOM),
            (b"PRESENCE a\0b", BAD_USERNAME),
            (b"\0", UNKNOWN),
            (b"\0PING", UNKNOWN),
        ],
    );
    alive(c, "after-nul");
}

/// Only a CR right before the LF is part of the line ending.
fn lone_cr(c: &mut Client) {
    table(
        c,
        &[
            (b"PING a\rb", "OK PONG a\rb"),
            (b"\rPING", UNKNOWN),
            (b"PING\r ", UNKNOWN),
            // CR CR LF: the line is one CR.
            (b"\r\r", UNKNOWN),
            (b"SAY #lobby a\rb", BAD_TEXT),
            (b"JOIN #a\rb", BAD_ROOM),
        ],
    );
    // CR LF alone is a blank line: no answer at all.
    c.send_raw(b"\r\n \r\n");
    assert!(c.sync().is_empty());
}

fn invalid_utf8(c: &mut Client) {
    table(
        c,
        &[
            // At the start, in the middle, at the end.
            (b"\x80PING a", BAD_UTF8),
            (b"PING a\xc3\x28b", BAD_UTF8),
            (b"PING a\xe2\x82", BAD_UTF8),
            // Overlong encoding, a UTF-16 surrogate, a telnet-escaped 0xFF.
            (b"PING \xc0\xaf", BAD_UTF8),
            (b"PING \xed\xa0\x80", BAD_UTF8),
            (b"PING \xff\xff", BAD_UTF8),
            (b"SAY #lobby caf\xe9", BAD_UTF8),
            // Valid multi-byte text is fine.
            (
                "PING caf\u{e9}\u{1F600}".as_bytes(),
                "OK PONG caf\u{e9}\u{1F600}",
            ),
        ],
    );
    alive(c, "after-utf8");
}

fn ten_thousand_pipelined_pings(s: &Server) {
    let mut c = s.client();
    let mut batch = String::new();
    for i in 0..10_000 {
        batch.push_str(&format!("PING {i}\n"));
    }
    // One write; the replies (about 110 KB) fit in the socket buffers, so
    // reading after writing cannot deadlock.
    c.stream.write_all(batch.as_bytes()).unwrap();
    for i in 0..10_000 {
        c.expect(&format!("OK PONG {i}"));
    }
    assert!(c.sync().is_empty());
}

fn unknown_verbs(c: &mut Client) {
    table(
        c,
        &[
            (b"FROB", UNKNOWN),
            (b"frob x y", UNKNOWN),
            (b"PINGX", UNKNOWN),
            (b"PI NG", UNKNOWN),
            (b"#lobby hi", UNKNOWN),
            (b"@bob hi", UNKNOWN),
            (b"\t\tFROB\t", UNKNOWN),
            (
                b"HELP FROB",
                "ERR UNKNOWN_COMMAND no command by that name; try HELP",
            ),
            (
                b"HELP FROB FRIEND",
                "ERR UNKNOWN_COMMAND no command by that name; try HELP",
            ),
        ],
    );
}

fn wrong_argument_counts(c: &mut Client, s: &Server) {
    let cases: Vec<(&[u8], String)> = vec![
        (b"REGISTER a", usage("REGISTER")),
        (b"LOGIN", usage("LOGIN")),
        (b"JOIN", usage("JOIN")),
        (b"JOIN #a #b", usage("JOIN")),
        (b"CREATE", usage("CREATE")),
        (b"LEAVE #a #b", usage("LEAVE")),
        (b"WHO", usage("WHO")),
        (b"ROOMS x", usage("ROOMS")),
        (b"ADD #lobby", usage("ADD")),
        (b"ADD #lobby a b", usage("ADD")),
        (b"KICK #lobby", usage("KICK")),
        (b"OP #lobby a b", usage("OP")),
        (b"SAY", usage("SAY")),
        (b"SAY #lobby", usage("SAY")),
        (b"SAY #lobby   ", usage("SAY")),
        (b"PRESENCE", usage("PRESENCE")),
        (b"PRESENCE a b", usage("PRESENCE")),
        (b"FRIEND", usage("FRIEND")),
        (b"FRIEND ADD", usage("FRIEND")),
        (b"FRIEND ADD a b", usage("FRIEND")),
        (b"FRIEND LIST x", usage("FRIEND")),
        (b"FRIEND EAT bob", usage("FRIEND")),
        (b"STATS x", usage("STATS")),
        (b"PING a b", usage("PING")),
        (b"SAY lobby hi", BAD_TARGET.to_string()),
    ];
    let cases: Vec<(&[u8], &str)> = cases.iter().map(|(l, w)| (*l, w.as_str())).collect();
    table(c, &cases);
    // Before login the shape is checked first, too.
    let mut anon = s.client();
    table(&mut anon, &cases);
    // QUIT takes no arguments but ignores any it is given.
    anon.send("QUIT now");
    anon.expect("OK QUIT bye");
    assert!(anon.until_closed().is_empty());
    alive(c, "after-args");
}

fn malformed_names(c: &mut Client, s: &Server) {
    let long_user = "a".repeat(33);
    let long_room = format!("#{}", "b".repeat(33));
    let (r33, u33) = (long_room.as_bytes(), long_user.as_bytes());
    let join_long = [b"JOIN ", r33].concat();
    let create_long = [b"CREATE ", r33].concat();
    let presence_long = [b"PRESENCE ", u33].concat();
    let friend_long = [b"FRIEND ADD ", u33].concat();
    let room32 = format!("#{}", "b".repeat(32));
    let add_long = [b"ADD ", room32.as_bytes(), b" ", u33].concat();
    let say_long = [b"SAY @", u33, b" hi"].concat();
    // A room name of exactly 32 is fine; mallory is its admin.
    c.send(&format!("JOIN {room32}"));
    c.expect(&format!("OK JOIN {room32} created"));
    table(
        c,
        &[
            (b"JOIN #", BAD_ROOM),
            (b"JOIN lobby", BAD_ROOM),
            (b"JOIN #a\tb", &usage("JOIN")),
            (b"JOIN #a\x01b", BAD_ROOM),
            (b"JOIN #a,b", BAD_ROOM),
            (b"JOIN ##", BAD_ROOM),
            (&join_long, BAD_ROOM),
            (b"CREATE #", BAD_ROOM),
            (&create_long, BAD_ROOM),
            (b"WHO #", BAD_ROOM),
            (b"SAY # hi", BAD_ROOM),
            (b"PRESENCE a\x01b", BAD_USERNAME),
            (b"PRESENCE 1abc", BAD_USERNAME),
            (&presence_long, BAD_USERNAME),
            // Commands naming someone else answer NO_SUCH_USER for a name
            // that cannot exist.
            (&friend_long, NO_SUCH_USER),
            (b"FRIEND ADD a\x01b", NO_SUCH_USER),
            (&add_long, NO_SUCH_USER),
            (&say_long, NO_SUCH_USER),
            (b"SAY @ hi", NO_SUCH_USER),
        ],
    );

    let mut anon = s.client();
    let reg_long = [b"REGISTER ", u33, b" password1"].concat();
    table(
        &mut anon,
        &[
            (&reg_long, BAD_USERNAME),
            (b"REGISTER a\x01b password1", BAD_USERNAME),
            (b"REGISTER a\0b password1", BAD_USERNAME),
            (b"REGISTER 1ab password1", BAD_USERNAME),
            (b"REGISTER _ab password1", BAD_USERNAME),
            (b"REGISTER #ab password1", BAD_USERNAME),
            (
                b"LOGIN a\x01b password1",
                "ERR BAD_LOGIN invalid user name or password",
            ),
        ],
    );
    // A user name of exactly 32 is fine.
    let u32name = "u".repeat(32);
    anon.send(&format!("REGISTER {u32name} password1"));
    anon.expect(&format!("OK REGISTER {u32name}"));
}

fn half_close(s: &Server) {
    // A plain command, then FIN at once.
    let mut c = s.client();
    c.send("PING half");
    c.shutdown_write();
    c.expect("OK PONG half");
    assert!(c.until_closed().is_empty());

    // A command whose answer is deferred (hashing, then a commit).
    let mut c = s.client();
    c.send("REGISTER halfway password1");
    c.shutdown_write();
    c.expect("OK REGISTER halfway");
    assert!(c.until_closed().is_empty());

    // An unterminated last line is not a command: it gets no answer.
    let mut c = s.client();
    c.send_raw(b"PING done\nPING unterminated");
    c.shutdown_write();
    c.expect("OK PONG done");
    assert!(c.until_closed().is_empty());
}

fn connection_reset(s: &Server) {
    let mut helps = Vec::new();
    for _ in 0..200 {
        helps.extend_from_slice(b"HELP\n");
    }
    for round in 0..4 {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.write_all(&helps).unwrap();
        if round % 2 == 1 {
            // Wait until the answers are flowing, then go away mid-reply.
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut first = [0u8; 512];
            assert!(std::io::Read::read(&mut c, &mut first).unwrap() > 0);
        }
        // Closing with unread data makes the kernel send RST, not FIN.
        drop(c);
    }
    alive(&mut s.client(), "after-reset");
}

/// A client that is not speaking telnet can send 0xFF 0xFA (IAC SB) by
/// accident, say in Latin-1 text. A subnegotiation ends with its line, so
/// this costs that one line, never the session.
#[test]
fn stray_telnet_subnegotiation_does_not_deafen_the_session() {
    let s = Server::start();
    let mut c = s.client();
    c.send_raw(b"SAY #x caf\xff\xfa\n");
    // Well past any real subnegotiation (NAWS, TTYPE... are a few bytes).
    let mut more = Vec::new();
    for i in 0..200 {
        more.extend_from_slice(format!("PING {i}\n").as_bytes());
    }
    c.send_raw(&more);
    c.expect(
        "ERR NOT_LOGGED_IN log in first with LOGIN <user> <password> or REGISTER <user> <password>",
    );
    for i in 0..200 {
        c.expect(&format!("OK PONG {i}"));
    }
}

/// An ATTACH line whose size the server cannot read, because the line is
/// over `--max-line` or not UTF-8, is followed by a body of unknown length:
/// the session gets one ERR and is closed (reason protocol_error), and the
/// body, which holds a command here, is never run.
#[test]
fn an_attach_line_too_long_or_not_utf8_closes_the_session_unread() {
    let s = Server::with_args(&["--max-line", "100"]);
    let [mut bob] = s.room_with("#room", ["bob"]);
    bob.ignored.push("PRESENCE ");
    let body = b"SAY #room smuggled\n";
    let long_name = format!("{}.txt", "n".repeat(200));
    let cases: [(Vec<u8>, &str); 2] = [
        (
            // The verb in any case, after a blank, as the parser reads it.
            format!(" attach #room {long_name} text/plain {}\n", body.len()).into_bytes(),
            "ERR LINE_TOO_LONG the ATTACH line is longer than the limit; closing the connection, since its body cannot be told from commands",
        ),
        (
            [
                &b"ATTACH #room caf\xe9.txt text/plain "[..],
                body.len().to_string().as_bytes(),
                b"\n",
            ]
            .concat(),
            "ERR BAD_UTF8 the ATTACH line is not valid UTF-8; closing the connection, since its body cannot be told from commands",
        ),
    ];
    // alice is a member, so the smuggled SAY would be posted if it ran.
    s.user("alice").send("JOIN #room");
    bob.expect("JOINED #room alice");
    for (line, err) in cases {
        let mut alice = s.user("alice");
        let wire = [&line[..], body, b"PING after\n"].concat();
        alice.send_raw(&wire);
        alice.expect(err);
        assert_closed(&mut alice);
    }
    bob.send("HISTORY #room");
    bob.expect("OK HISTORY #room 0");
    bob.send("STATS");
    let rows: Vec<String> = std::iter::from_fn(|| Some(bob.line()))
        .take_while(|l| !l.starts_with("OK STATS"))
        .collect();
    assert!(
        rows.contains(&"STAT closed_protocol_error 2".to_string()),
        "{rows:?}"
    );
}

/// Nothing more comes and the server has closed the connection (EOF or
/// reset), within the usual timeout.
fn assert_closed(c: &mut Client) {
    assert_eq!(c.try_line(common::TIMEOUT), None, "a line after the ERR");
    c.stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    match std::io::Read::read(&mut c.stream, &mut [0u8; 1]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection still open: {other:?}"),
    }
}
