//! Limits over real sockets: flood control, connection and membership caps,
//! the login deadline, descriptor exhaustion and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server};

#[test]
fn a_flooder_is_slowed_not_refused_and_others_are_served() {
    let s = Server::with_args(&["--command-rate", "200", "--command-burst", "20"]);
    let mut flooder = s.user("flooder");
    let mut other = s.user("other");
    let n = 120;
    let started = Instant::now();
    let batch: String = (0..n).map(|i| format!("PING {i}\n")).collect();
    flooder.send_raw(batch.as_bytes());
    // While the flooder waits for its bucket, another session is answered.
    other.send("PING me");
    other.expect("OK PONG me");
    for i in 0..n {
        flooder.expect(&format!("OK PONG {i}"));
    }
    // 20 at once, then 200 a second: about half a second for 120.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn ten_thousand_pipelined_commands_pass_the_default_limits() {
    let s = Server::start();
    let mut c = s.user("bulk");
    let batch: String = (0..10_000).map(|i| format!("PING {i}\n")).collect();
    let writer = {
        let mut stream = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            stream.write_all(batch.as_bytes()).unwrap();
        })
    };
    for i in 0..10_000 {
        c.expect(&format!("OK PONG {i}"));
    }
    writer.join().unwrap();
}

#[test]
fn connection_caps() {
    let s = Server::with_args(&["--max-connections", "4", "--max-unauth-per-ip", "2"]);
    let mut a = s.user("alice");
    let _b = s.client();
    let _c = s.client();
    // Two connections not logged in: a third is refused.
    let mut d = Client::connect_raw(&s.addr);
    d.expect("ERR TOO_MANY_CONNECTIONS too many connections from your address are not logged in");
    assert!(d.until_closed().is_empty());
    a.send("PING");
    a.expect("OK PONG");
    drop(_c);
    a.sync();
    let mut e = s.client();
    e.send("REGISTER erin password1");
    e.expect("OK REGISTER erin");
    let _g = s.client();
    // Four connections open: a fifth is refused, whoever it is.
    let mut f = Client::connect_raw(&s.addr);
    f.expect("ERR SERVER_FULL too many connections; try again later");
    assert!(f.until_closed().is_empty());
}

#[test]
fn session_room_member_and_message_caps() {
    let s = Server::with_args(&[
        "--max-sessions-per-user",
        "2",
        "--max-rooms-per-user",
        "2",
        "--max-room-members",
        "2",
        "--max-message",
        "10",
    ]);
    let mut a = s.user("alice");
    let mut a2 = s.client();
    a2.login("alice");
    let mut a3 = s.client();
    a3.send("LOGIN alice password1");
    a3.expect("ERR TOO_MANY_SESSIONS too many sessions open for this user");
    a.send("JOIN #one");
    a.expect("OK JOIN #one created");
    a.send("CREATE #two");
    a.expect("OK CREATE #two");
    a.send("JOIN #three");
    a.expect("ERR TOO_MANY_ROOMS alice is in too many rooms already");
    let mut b = s.user("bob");
    b.send("JOIN #one");
    b.expect("OK JOIN #one joined");
    a.expect("JOINED #one bob");
    let mut c = s.user("carol");
    c.send("JOIN #one");
    c.expect("ERR ROOM_FULL #one is full");
    a.send("SAY #one 0123456789");
    a.expect_prefix("OK SAY #one 1 ");
    a.expect("RECEIPT #one 1 bob delivered");
    a.send("SAY #one 0123456789a");
    a.expect("ERR TEXT_TOO_LONG message longer than 10 bytes");
}

#[test]
fn login_deadline_closes_idle_anonymous_connections_only() {
    let s = Server::with_args(&["--login-timeout", "1"]);
    let mut idle_user = s.user("idle");
    let mut anon = s.client();
    // No PING, nothing typed: the anonymous connection is closed...
    anon.expect("ERR LOGIN_TIMEOUT log in within 1 seconds of connecting");
    assert!(anon.until_closed().is_empty());
    // ...while the logged-in one, equally idle and older, is still served.
    idle_user.send("PING still-here");
    idle_user.expect("OK PONG still-here");
    // The close is counted under its reason.
    idle_user.send("STATS");
    let rows: Vec<String> = std::iter::from_fn(|| Some(idle_user.line()))
        .take_while(|l| l != "OK STATS 57")
        .collect();
    assert_eq!(rows.len(), 57, "{rows:?}");
    assert!(
        rows[16].starts_with("STAT storage_commit_last_us "),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"STAT closed_login_timeout 1".to_string()),
        "{rows:?}"
    );
    assert!(rows.contains(&"STAT closed_quit 0".to_string()), "{rows:?}");
    // Rows are only ever appended: the old last row keeps its place.
    assert_eq!(rows[30], "STAT closed_slow_consumer_soft 0");
    assert_eq!(rows[32], "STAT closed_tls_handshake_timeout 0");
    // Nobody has said anything: no message is stored.
    assert_eq!(rows[33], "STAT messages_stored 0");
    // The WebSocket listener's close reasons came after it.
    assert_eq!(rows[34], "STAT closed_http_served 0");
    assert_eq!(rows[38], "STAT closed_ws_handshake_timeout 0");
    // The bus's rows came after those (zero without --bus), then the HTTP
    // exchanges, apart from sessions.
    assert_eq!(rows[39], "STAT bus_published 0");
    assert_eq!(rows[50], "STAT bus_log_lost 0");
    assert_eq!(rows[52], "STAT http_connections 0");
    assert_eq!(rows[53], "STAT http_requests 0");
    // Then the commits cut off mid-COMMIT (PostgreSQL only).
    assert_eq!(rows[54], "STAT storage_in_doubt_committed 0");
    assert_eq!(
        rows.last().map(String::as_str),
        Some("STAT storage_in_doubt_unknown 0")
    );
}

#[test]
fn a_reader_parked_over_the_soft_outbox_limit_is_dropped_after_its_seconds() {
    // The hard limit is far away: only the soft one can drop the reader.
    let s = Server::with_args(&[
        "--max-outbox",
        "33554432",
        "--outbox-soft-limit",
        "65536",
        "--outbox-soft-seconds",
        "1",
        "--durability",
        "async",
    ]);
    let mut sender = s.user("sender");
    sender.ignored = vec!["RECEIPT "];
    sender.send("JOIN #feed");
    sender.expect("OK JOIN #feed created");
    let mut parked = s.user("parked");
    parked.send("JOIN #feed");
    parked.expect("OK JOIN #feed joined");
    sender.expect("JOINED #feed parked");
    let mut watcher = s.user("watcher");
    // `parked` never reads again. Feed the room until the kernel's buffers
    // are full and the server holds more than the soft limit for it.
    let text = "z".repeat(4000);
    let batch: String = format!("SAY #feed {text}\n").repeat(100);
    let mut said = 0;
    while watcher.stat("outbox_bytes_queued") <= 65536 {
        assert!(said < 10_000, "40 MB sent and the outbox is still small");
        sender.send_raw(batch.as_bytes());
        for _ in 0..100 {
            said += 1;
            sender.expect_prefix(&format!("OK SAY #feed {said} "));
        }
    }
    // Above the soft limit from here on: dropped after about a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.stat("closed_slow_consumer_soft") == 0 {
        assert!(Instant::now() < deadline, "not dropped within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(watcher.stat("closed_slow_consumer"), 0);
    assert_eq!(watcher.stat("slow_consumer_drops"), 1);
    assert_eq!(watcher.stat("outbox_bytes_queued"), 0);
    // Its socket ends after what the kernel had buffered, which is less
    // than was said.
    let got = parked.read_to_eof();
    assert!(got < said * text.len(), "{got} bytes of {said} messages");
    // The sender was never over the limit and is still served; it saw
    // `parked` go.
    sender.expect_prefix("PRESENCE parked offline ");
    sender.send("PING alive");
    sender.expect("OK PONG alive");
}

#[test]
fn out_of_descriptors_keeps_serving_without_spinning() {
    let s = Server::spawn_with(&[], Some(48));
    let mut first: Vec<Client> = Vec::new();
    let mut waiting: Vec<Client> = Vec::new();
    // More clients than descriptors: the kernel queues the rest.
    for _ in 0..60 {
        let mut c = Client::connect_raw(&s.addr);
        match c.try_line(Duration::from_millis(200)) {
            Some(hello) => {
                assert!(hello.starts_with("HELLO"));
                first.push(c);
            }
            None => waiting.push(c),
        }
    }
    assert!(!waiting.is_empty(), "the limit was reached");
    assert!(first.len() > 10);
    // Existing sessions are served, and the loop does not spin while the
    // listener has connections it cannot take.
    let ticks = s.cpu_ticks();
    let started = Instant::now();
    for (n, c) in first.iter_mut().enumerate() {
        c.send(&format!("PING {n}"));
        c.expect(&format!("OK PONG {n}"));
    }
    while started.elapsed() < Duration::from_secs(1) {
        first[0].send("PING");
        first[0].expect("OK PONG");
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = s.cpu_ticks() - ticks;
    assert!(used < 40, "{used} ticks of CPU in about a second");
    // Descriptors come free: the waiting clients get in.
    let freed = waiting.len().min(first.len());
    first.truncate(first.len() - freed);
    for c in &mut waiting {
        let hello = c.line();
        assert!(hello.starts_with("HELLO"), "{hello}");
    }
}

#[test]
fn sigterm_says_bye_commits_and_exits_cleanly() {
    let mut s = Server::logged(&[]);
    let [mut a, mut b] = s.room_with("#r", ["alice", "bob"]);
    a.send("SAY #r before shutdown");
    a.expect_prefix("OK SAY #r 1 ");
    b.line();
    let log = s.terminate_logged();
    // The two sessions open at shutdown are closed for that reason, each
    // logged once.
    let closes: Vec<&str> = log.lines().filter(|l| l.contains(" closed: ")).collect();
    assert_eq!(closes.len(), 2, "{log}");
    assert!(
        closes.iter().all(|l| l.ends_with(" closed: shutdown")),
        "{log}"
    );
    let rest_a = a.until_closed();
    assert!(
        rest_a.contains(&"BYE server shutting down".to_string()),
        "{rest_a:?}"
    );
    assert_eq!(
        b.until_closed().last().map(String::as_str),
        Some("BYE server shutting down")
    );
    s.restart();
    let mut b = s.client();
    assert!(
        b.login("bob").is_empty(),
        "bob's cursor was saved at shutdown"
    );
    b.send("HISTORY #r");
    b.expect_prefix("HISTORY #r 1 ");
    b.expect("OK HISTORY #r 1");
}
