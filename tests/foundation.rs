//! The foundation over real sockets: framing, accounts, rooms, fan-out,
//! slow consumers, presence.

mod common;

use std::time::Duration;

use common::{Client, Server, msg};

#[test]
fn two_users_chat_in_a_room() {
    let s = Server::start();
    let mut alice = s.user("alice");
    let mut bob = s.user("bob");
    alice.send("JOIN #lobby");
    alice.expect("OK JOIN #lobby created");
    bob.send("join #Lobby");
    bob.expect("OK JOIN #lobby joined");
    alice.expect("JOINED #lobby bob");
    alice.send("SAY #lobby hello  bob, how are you?");
    let ok = alice.expect_prefix("OK SAY #lobby 1 ");
    let id = ok.rsplit(' ').next().unwrap().to_string();
    let got = bob.line();
    assert_eq!(msg(&got), "MSG #lobby 1 alice hello  bob, how are you?");
    assert!(got.contains(&id), "same msgid in reply and MSG");
    // Time is RFC 3339 UTC.
    let time = got.split(' ').nth(5).unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    assert!(time.ends_with('Z'));
    // Once the MSG reached bob's socket, alice gets a delivery receipt.
    alice.expect("RECEIPT #lobby 1 bob delivered");
    bob.send("SAY #lobby fine");
    bob.expect_prefix("OK SAY #lobby 2 ");
    assert_eq!(msg(&alice.line()), "MSG #lobby 2 bob fine");
    // Answering read alice's message, as a READ #lobby 1 would.
    alice.expect("RECEIPT #lobby 1 bob read");
    bob.expect("RECEIPT #lobby 2 alice delivered");
    bob.send("WHO #lobby");
    bob.expect("MEMBER #lobby alice online admin");
    bob.expect("MEMBER #lobby bob online member");
    bob.expect("OK WHO #lobby 2");
    bob.send("ROOMS");
    bob.expect("ROOM #lobby public 2 member");
    bob.expect("OK ROOMS 1");
    bob.send("LEAVE #lobby");
    bob.expect("OK LEAVE #lobby");
    alice.expect("LEFT #lobby bob");
    bob.send("SAY #lobby still here?");
    bob.expect("ERR NOT_MEMBER you are not a member of #lobby");
}

#[test]
fn joiner_gets_recent_history_after_the_join_reply() {
    let s = Server::start();
    let [mut alice] = s.room_with("#r", ["alice"]);
    for i in 1..=3 {
        alice.send(&format!("SAY #r message {i}"));
        alice.expect_prefix(&format!("OK SAY #r {i} "));
    }
    let mut bob = s.user("bob");
    bob.send("JOIN #r");
    bob.expect("OK JOIN #r joined");
    for i in 1..=3 {
        assert_eq!(msg(&bob.line()), format!("MSG #r {i} alice message {i}"));
    }
    assert!(bob.sync().is_empty());
}

#[test]
fn a_users_other_session_sees_its_own_message() {
    let s = Server::start();
    let mut phone = s.user("alice");
    let mut laptop = s.client();
    laptop.login("alice");
    phone.send("JOIN #home");
    phone.expect("OK JOIN #home created");
    laptop.expect("JOINED #home alice");
    phone.send("SAY #home from my phone");
    phone.expect_prefix("OK SAY #home 1 ");
    assert_eq!(msg(&laptop.line()), "MSG #home 1 alice from my phone");
    assert!(
        phone.sync().is_empty(),
        "the sending session gets only its OK"
    );
}

#[test]
fn non_members_cannot_speak_and_pre_login_commands_are_refused() {
    let s = Server::start();
    let [mut alice] = s.room_with("#r", ["alice"]);
    let mut mallory = s.user("mallory");
    mallory.send("SAY #r hi");
    mallory.expect("ERR NOT_MEMBER you are not a member of #r");
    mallory.send("SAY #nowhere hi");
    mallory.expect("ERR NO_SUCH_ROOM no such room");
    assert!(alice.sync().is_empty());

    let mut anon = s.client();
    for cmd in [
        "JOIN #r",
        "SAY #r hi",
        "WHO #r",
        "ROOMS",
        "FRIEND LIST",
        "STATS",
    ] {
        anon.send(cmd);
        anon.expect(
            "ERR NOT_LOGGED_IN log in first with LOGIN <user> <password> or REGISTER <user> <password>",
        );
    }
    anon.send("PING");
    anon.expect("OK PONG");
    anon.send("HELP SAY");
    anon.expect_prefix("HELP SAY #room <text>");
    anon.expect("OK HELP SAY");
    // Words after the verb, as in the usage line, still ask about the verb.
    anon.send("HELP friend add bob");
    anon.expect(
        "HELP FRIEND ADD|ACCEPT|REJECT|REMOVE|BLOCK|UNBLOCK <user> | FRIEND LIST|REQUESTS|BLOCKED - send, answer and list friend requests; list friends; block a user",
    );
    anon.expect("OK HELP FRIEND");
    anon.send("LOGIN alice wrongpassword");
    anon.expect("ERR BAD_LOGIN invalid user name or password");
    anon.send("LOGIN nosuchuser password1");
    anon.expect("ERR BAD_LOGIN invalid user name or password");
    anon.send("REGISTER alice password1");
    anon.expect("ERR USER_EXISTS that user name is taken");
    // The password is the rest of the line: a space in it is a bad password.
    anon.send("REGISTER carol my password");
    anon.expect("ERR BAD_PASSWORD passwords are 8-128 characters without spaces");
    anon.send("LOGIN alice my password");
    anon.expect("ERR BAD_PASSWORD passwords are 8-128 characters without spaces");
    anon.send("REGISTER 1abc password1");
    anon.expect_prefix("ERR BAD_USERNAME ");
    anon.send("REGISTER abc short");
    anon.expect_prefix("ERR BAD_PASSWORD ");
    anon.send("QUIT");
    anon.expect("OK QUIT bye");
    assert!(anon.until_closed().is_empty());
}

#[test]
fn framing_errors_are_answered_and_the_session_survives() {
    let s = Server::with_args(&["--max-line", "100"]);
    let mut c = s.client();
    // CRLF, telnet negotiation, empty lines.
    c.send_raw(b"\xff\xfd\x01\xff\xfb\x03PING a\r\n\r\n\n");
    c.expect("OK PONG a");
    // A line over the limit, split across writes, then a good one.
    c.send_raw(&[b'x'; 150]);
    c.expect("ERR LINE_TOO_LONG line longer than the limit; it was discarded");
    c.send_raw(&[b'y'; 150]);
    c.send_raw(b"\nPING b\n");
    c.expect("OK PONG b");
    // Invalid UTF-8 at the start, middle and end.
    c.send_raw(b"\xc3\x28PING\nPING \xe2\x82 x\nPING \xff\xff\n");
    for _ in 0..3 {
        c.expect("ERR BAD_UTF8 line is not valid UTF-8");
    }
    c.send("ping c");
    c.expect("OK PONG c");
    c.send("FROB");
    c.expect("ERR UNKNOWN_COMMAND unknown command; try HELP");
    c.send("PING a b");
    c.expect("ERR BAD_ARGS wrong arguments for PING; try HELP PING");
    c.send("PING d");
    c.expect("OK PONG d");
}

#[test]
fn telnet_client_works() {
    let s = Server::start();
    // What telnet sends when it connects: option negotiation, CRLF lines.
    let mut c = s.client();
    c.send_raw(b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0");
    c.send_raw(b"REGISTER tel password1\r\n");
    c.expect("OK REGISTER tel");
    c.send_raw(b"join #t\r\nsay #t hi from telnet\r\n");
    c.expect("OK JOIN #t created");
    c.expect_prefix("OK SAY #t 1 ");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let s = Server::start();
    let mut c = s.client();
    let mut batch = String::from("REGISTER pipe password1\nJOIN #p\n");
    for i in 0..200 {
        batch.push_str(&format!("SAY #p n{i}\nPING {i}\n"));
    }
    c.send_raw(batch.as_bytes());
    c.expect("OK REGISTER pipe");
    c.expect("OK JOIN #p created");
    for i in 0..200 {
        c.expect_prefix(&format!("OK SAY #p {} ", i + 1));
        c.expect(&format!("OK PONG {i}"));
    }
}

/// A SYNC answered from memory ends before the SAY sent ahead of it is on
/// disk; its answer still comes after the SAY's.
#[test]
fn a_sync_pipelined_after_a_say_answers_after_it() {
    let s = Server::start();
    let mut c = s.user("pipe");
    c.send("JOIN #p");
    c.expect("OK JOIN #p created");
    for i in 1..=20 {
        c.send_raw(format!("SAY #p n{i}\nSYNC #p 0\n").as_bytes());
        c.expect_prefix(&format!("OK SAY #p {i} "));
        // Read in the SAY's turn, the SYNC sees the messages before it
        // (protocol.md, section 6): all of them, in order, then its OK.
        let mut j = 0;
        loop {
            let line = c.line();
            if line.starts_with("OK SYNC ") {
                assert_eq!(line, format!("OK SYNC {j}"));
                break;
            }
            j += 1;
            assert_eq!(msg(&line), format!("MSG #p {j} pipe n{j}"));
        }
        assert!(j == i - 1 || j == i, "{j} messages for SYNC number {i}");
    }
}

#[test]
fn slow_consumer_is_dropped_and_others_get_everything_in_order() {
    let s = Server::with_args(&["--max-outbox", "65536"]);
    let [mut sender, mut good, mut slow] = s.room_with("#busy", ["sender", "good", "slow"]);
    // `slow` never reads again; `good` reads in its own thread.
    // Enough to overflow the kernel's socket buffers as well as the outbox.
    let text = "z".repeat(4000);
    let total = 4000;
    let reader = {
        let text = text.clone();
        std::thread::spawn(move || {
            let mut next = 1;
            while next <= total {
                let l = good.line();
                if l.starts_with("MSG") {
                    assert_eq!(msg(&l), format!("MSG #busy {next} sender {text}"));
                    next += 1;
                }
            }
            good
        })
    };
    for batch in 0..(total / 100) {
        let mut lines = String::new();
        for _ in 0..100 {
            lines.push_str(&format!("SAY #busy {text}\n"));
        }
        sender.send_raw(lines.as_bytes());
        let mut acked = 0;
        while acked < 100 {
            let l = sender.line();
            if l.starts_with("OK ") {
                acked += 1;
                assert!(
                    l.starts_with(&format!("OK SAY #busy {} ", batch * 100 + acked)),
                    "{l}"
                );
            }
        }
    }
    let mut good = reader
        .join()
        .expect("good member got every message in order");
    // The slow member was dropped: its socket ends (after what the kernel
    // buffered), and STATS counts it.
    good.send("STATS");
    let mut drops = None;
    loop {
        let l = good.line();
        if let Some(v) = l.strip_prefix("STAT slow_consumer_drops ") {
            drops = Some(v.to_string());
        }
        if l.starts_with("OK STATS") {
            break;
        }
    }
    assert_eq!(drops.as_deref(), Some("1"));
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let rest = slow.until_closed();
    assert!(rest.len() < total, "slow consumer was cut off");
    assert!(
        rest.iter().any(|l| l.contains("ERR SLOW_CONSUMER")) || rest.len() > 5,
        "the drop is visible to the slow client"
    );
}

#[test]
fn ping_is_answered_while_logins_are_hashing() {
    // A deliberately expensive hash: each login takes a noticeable while.
    let s = Server::with_args(&["--argon2-memory-kib", "65536", "--argon2-iterations", "4"]);
    let mut first = s.client();
    first.send("REGISTER slowhash password1");
    first.expect("OK REGISTER slowhash");
    let mut logins: Vec<Client> = (0..6).map(|_| s.client()).collect();
    for c in &mut logins {
        c.send("LOGIN slowhash password1");
    }
    let mut pinger = s.client();
    pinger.send("PING now");
    pinger.expect("OK PONG now");
    let waiting = logins
        .iter_mut()
        .map(|c| c.try_line(Duration::from_millis(1)))
        .filter(Option::is_none)
        .count();
    assert!(
        waiting >= 4,
        "PING answered while {waiting} logins still hash"
    );
    for c in &mut logins {
        c.expect("OK LOGIN slowhash");
        c.expect("OK SYNC 0");
    }
}

#[test]
fn presence_on_first_connect_and_last_disconnect() {
    let s = Server::start();
    let [mut alice, bob] = s.room_with("#p", ["alice", "bob"]);
    let mut bob2 = s.client();
    bob2.login("bob");
    drop(bob);
    assert!(
        alice.sync().is_empty(),
        "bob is still online on another session"
    );
    drop(bob2);
    let off = alice.line();
    assert!(off.starts_with("PRESENCE bob offline 20"), "{off}");
    alice.send("PRESENCE bob");
    alice.expect_prefix("OK PRESENCE bob offline 20");
    let mut bob3 = s.client();
    bob3.login("bob");
    alice.expect("PRESENCE bob online");
    alice.send("PRESENCE bob");
    alice.expect("OK PRESENCE bob online");
    alice.send("PRESENCE nobody");
    alice.expect("ERR NO_SUCH_USER no such user");
}

#[test]
fn half_close_still_gets_the_reply() {
    let s = Server::start();
    let mut c = s.user("half");
    c.send("JOIN #h");
    c.send("SAY #h last words");
    c.shutdown_write();
    c.expect("OK JOIN #h created");
    c.expect_prefix("OK SAY #h 1 ");
    assert!(c.until_closed().is_empty());
}

/// Members who speak at once share commits, so one batch of a room's
/// messages holds several senders': each sender gets the others' lines,
/// byte for byte as a listener gets them, and none of its own.
#[test]
fn members_speaking_at_once_get_each_others_messages_only() {
    const EACH: usize = 50;
    let s = Server::start();
    let [mut alice, mut bob, mut carol] = s.room_with("#r", ["alice", "bob", "carol"]);
    let burst = |who: &str| {
        (0..EACH)
            .map(|i| format!("SAY #r {who}{i}\n"))
            .collect::<String>()
    };
    alice.send_raw(burst("a").as_bytes());
    bob.send_raw(burst("b").as_bytes());
    let heard: Vec<String> = (0..2 * EACH).map(|_| carol.line()).collect();
    for (client, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let others: Vec<&String> = heard
            .iter()
            .filter(|l| msg(l).split(' ').nth(3) != Some(name))
            .collect();
        assert_eq!(others.len(), EACH, "{name}");
        // Besides the MSG lines: its OKs, and receipts for its messages.
        let (mut oks, mut got) = (0, Vec::new());
        while oks < EACH || got.len() < EACH {
            let l = client.line();
            if l.starts_with("OK SAY #r ") {
                oks += 1;
            } else if l.starts_with("MSG ") {
                got.push(l);
            } else {
                assert!(l.starts_with("RECEIPT #r "), "{name}: {l}");
            }
        }
        assert_eq!(got.iter().collect::<Vec<_>>(), others, "{name}");
    }
}
