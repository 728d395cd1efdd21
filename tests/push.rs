//! Push notifications: a user with a pusher and no session online gets a
//! POST in the Matrix push gateway shape at a gateway this test runs on
//! loopback. The gateway answers 500 once (the server retries, same
//! event_id), then rejects the pushkey (the pusher goes). Without
//! `--push-allow-private` a loopback gateway is refused.

mod common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::gateway::{gateway, gateway_on};
use common::{Server, each_store};
use serde_json::{Value, json};

fn next(rx: &mpsc::Receiver<(String, Value)>) -> Value {
    let (path, body) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a notification within 10 s");
    assert_eq!(path, "/_matrix/push/v1/notify");
    body
}

fn notification(msgid: &str, room: &str, prio: &str, unread: u64) -> Value {
    json!({"notification": {
        "event_id": msgid,
        "room_id": room,
        "type": "m.room.message",
        "sender": "bob",
        "prio": prio,
        "counts": {"unread": unread},
        "devices": [{"app_id": "org.example.chat", "pushkey": "key-1", "data": {}}],
    }})
}

#[test]
fn offline_users_are_notified_retried_and_rejected_pushkeys_dropped() {
    each_store(|store| {
        let (url, rx) = gateway(vec![
            (500, "oops"),
            (200, "{}"),
            (200, "{}"),
            (200, r#"{"rejected":["key-1"]}"#),
        ]);
        let s = Server::with_args(&[store, &["--push-allow-private"]].concat());
        let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]);
        alice.send(&format!("PUSHER ADD org.example.chat key-1 {url}"));
        alice.expect("OK PUSHER ADD org.example.chat key-1");
        alice.send("PUSHER LIST");
        alice.expect(&format!("PUSHER org.example.chat key-1 {url}"));
        alice.expect("OK PUSHER LIST 1");
        // Online: no notification.
        bob.send("SAY #r while you are here");
        bob.expect_news_prefix("OK SAY #r 1 ");
        alice.expect_news_prefix("MSG #r 1 ");
        alice.send("QUIT");
        alice.expect_news("OK QUIT bye");
        bob.expect_news_prefix("PRESENCE alice offline ");

        // Offline: a notification; the gateway fails once, and the retry is
        // the same request.
        bob.send("SAY #r lunch?");
        let ok = bob.expect_news_prefix("OK SAY #r 2 ");
        let msgid = ok.rsplit(' ').next().unwrap().to_string();
        let want = notification(&msgid, "#r", "low", 2);
        assert_eq!(next(&rx), want);
        assert_eq!(next(&rx), want, "retried after the 500");
        // A mention is high priority.
        bob.send("SAY #r @alice are you there?");
        let ok = bob.expect_news_prefix("OK SAY #r 3 ");
        let msgid = ok.rsplit(' ').next().unwrap().to_string();
        assert_eq!(next(&rx), notification(&msgid, "#r", "high", 3));
        // The gateway rejects the pushkey: the pusher is gone.
        bob.send("SAY #r last one");
        let ok = bob.expect_news_prefix("OK SAY #r 4 ");
        let msgid = ok.rsplit(' ').next().unwrap().to_string();
        assert_eq!(next(&rx), notification(&msgid, "#r", "low", 4));
        let mut alice = s.user("alice");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            alice.send("PUSHER LIST");
            let line = alice.news();
            if line == "OK PUSHER LIST 0" {
                break;
            }
            alice.expect_news("OK PUSHER LIST 1");
            assert!(std::time::Instant::now() < deadline, "the pusher stays");
            std::thread::sleep(Duration::from_millis(50));
        }
        bob.expect_news("PRESENCE alice online");
        alice.send("QUIT");
        alice.expect_news("OK QUIT bye");
        bob.expect_news_prefix("PRESENCE alice offline ");
        bob.send("SAY #r nobody hears this");
        bob.expect_news_prefix("OK SAY #r 5 ");
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "no pusher is left"
        );
    });
}

#[test]
fn pushers_are_checked_and_private_gateways_refused_by_default() {
    let s = Server::start();
    let mut alice = s.user("alice");
    for (line, err) in [
        (
            "PUSHER ADD app key http://127.0.0.1:9/_matrix/push/v1/notify",
            "ERR BAD_PUSHER the gateway's address is private",
        ),
        (
            "PUSHER ADD app key http://10.0.0.1/_matrix/push/v1/notify",
            "ERR BAD_PUSHER the gateway's address is private",
        ),
        (
            "PUSHER ADD app key https://push.example.org/notify",
            "ERR BAD_PUSHER the URL must end in /_matrix/push/v1/notify",
        ),
        (
            "PUSHER ADD app key ftp://push.example.org/_matrix/push/v1/notify",
            "ERR BAD_PUSHER the URL must be http:// or https://",
        ),
        (
            "PUSHER ADD app key http://push.example.org@10.0.0.1/_matrix/push/v1/notify",
            "ERR BAD_PUSHER the URL must be http:// or https://",
        ),
        ("PUSHER REMOVE app key", "ERR NO_SUCH_PUSHER no such pusher"),
        (
            "PUSHER ADD app key",
            "ERR BAD_ARGS wrong arguments for PUSHER; try HELP PUSHER",
        ),
    ] {
        alice.send(line);
        alice.expect(err);
    }
    alice.send("PUSHER ADD app key https://push.example.org/_matrix/push/v1/notify");
    alice.expect("OK PUSHER ADD app key");
    alice.send("PUSHER REMOVE app key");
    alice.expect("OK PUSHER REMOVE app key");
    alice.send("PUSHER LIST");
    alice.expect("OK PUSHER LIST 0");
}

#[test]
fn a_queued_notification_survives_a_crash() {
    // The gateway's port, closed for now: sends fail and are retried.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/_matrix/push/v1/notify");
    let mut s = Server::with_args(&["--push-allow-private"]);
    let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]);
    alice.send(&format!("PUSHER ADD org.example.chat key-1 {url}"));
    alice.expect("OK PUSHER ADD org.example.chat key-1");
    alice.send("QUIT");
    alice.expect_news("OK QUIT bye");
    bob.expect_news_prefix("PRESENCE alice offline ");
    bob.send("SAY #r are you there?");
    let ok = bob.expect_news_prefix("OK SAY #r 1 ");
    let msgid = ok.rsplit(' ').next().unwrap().to_string();
    s.restart();
    let (_, rx) = gateway_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), Vec::new());
    assert_eq!(next(&rx), notification(&msgid, "#r", "low", 1));
}
