//! INBOX lists every conversation with its unread count, newest activity
//! first; UNREAD keeps a user's other sessions' counts right as the read
//! cursor moves on any of them.

mod common;

use common::{Client, Server};

/// `INBOX <conv> <kind> <last-seq> <unread> <mentions> <last-time> <last-sender>`
/// lines without their times, which the test cannot know; checks that
/// each time is a time.
fn inbox(c: &mut Client) -> Vec<String> {
    c.send("INBOX");
    let mut lines = Vec::new();
    loop {
        let l = c.news();
        if l.starts_with("OK INBOX ") {
            assert_eq!(l, format!("OK INBOX {}", lines.len()));
            return lines;
        }
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!((f.len(), f[0]), (8, "INBOX"), "{l}");
        assert!(f[6] == "-" || f[6].ends_with('Z'), "{l}");
        lines.push(format!(
            "{} {} {} {} {} {}",
            f[1], f[2], f[3], f[4], f[5], f[7]
        ));
    }
}

#[test]
fn inbox_lists_every_conversation_newest_first_with_unread_counts() {
    let s = Server::start();
    let mut carol = s.user("carol");
    let mut alice = s.user("alice");
    carol.send("CREATE #quiet");
    carol.expect("OK CREATE #quiet");
    carol.send("ADD #quiet alice");
    carol.expect("OK ADD #quiet alice");
    alice.expect("ADDED #quiet alice carol");
    let [mut bob, mut alice2] = s.room_with("#r", ["bob", "alice"]);
    alice.expect("JOINED #r alice");
    // Two of them mention alice; `@alicex` does not.
    for (n, text) in [(1, "r1 @Alice"), (2, "r2 (@alice)"), (3, "r3 @alicex")] {
        bob.send(&format!("SAY #r {text}"));
        bob.expect_news_prefix(&format!("OK SAY #r {n} "));
    }
    bob.send("FRIEND ADD alice");
    assert_eq!(bob.news(), "OK FRIEND ADD alice pending");
    for _ in 0..3 {
        alice.expect_prefix("MSG #r ");
    }
    alice.expect("FRIEND REQUEST bob");
    alice.send("FRIEND ACCEPT bob");
    alice.expect("OK FRIEND ACCEPT bob");
    assert_eq!(bob.news(), "FRIEND ACCEPTED alice");
    bob.send("SAY @alice psst @alice");
    bob.expect_news_prefix("OK SAY @alice 1 ");
    alice.expect_prefix("MSG @bob 1 ");
    assert_eq!(
        inbox(&mut alice),
        [
            "@bob direct 1 1 0 bob",
            "#r public 3 3 2 bob",
            "#quiet group 0 0 0 -"
        ]
    );
    // Each conversation appears under the name its viewer uses.
    assert_eq!(
        inbox(&mut bob),
        ["@alice direct 1 0 0 bob", "#r public 3 0 0 bob"]
    );

    // READ on one session: the other hears the new count, the reader gets
    // its OK and nothing else.
    alice.send("READ #r 2");
    alice.expect("OK READ #r 2");
    for _ in 0..3 {
        alice2.expect_prefix("MSG #r ");
    }
    alice2.expect("FRIEND REQUEST bob");
    alice2.expect("FRIEND ACCEPTED bob");
    alice2.expect_prefix("MSG @bob 1 ");
    alice2.expect("UNREAD #r 1");
    loop {
        if bob.line() == "RECEIPT #r 2 alice read" {
            break;
        }
    }
    // One unread message is left, and it mentions no one.
    assert_eq!(inbox(&mut alice2)[1], "#r public 3 1 0 bob");
    // A READ that moves nothing tells no one.
    alice.send("READ #r 1");
    alice.expect("OK READ #r 1");
    alice2.send("PING");
    alice2.expect("OK PONG");
    // Speaking reads what came before: r3 was unread, so the other
    // session hears the count drop to 0, after its copy of the message.
    alice.send("SAY #r hi");
    alice.expect_news_prefix("OK SAY #r 4 ");
    alice2.expect_news_prefix("MSG #r 4 ");
    assert_eq!(alice2.news(), "UNREAD #r 0");
    // With nothing unread, speaking again changes no count.
    alice.send("SAY #r again");
    alice.expect_news_prefix("OK SAY #r 5 ");
    alice2.expect_news_prefix("MSG #r 5 ");
    alice2.send("PING");
    assert_eq!(alice2.news(), "OK PONG");
    assert_eq!(
        inbox(&mut alice),
        [
            "#r public 5 0 0 alice",
            "@bob direct 1 1 0 bob",
            "#quiet group 0 0 0 -"
        ]
    );
}

#[test]
fn inbox_needs_a_login_and_no_arguments() {
    let s = Server::start();
    let mut c = s.client();
    c.send("INBOX");
    c.expect_prefix("ERR NOT_LOGGED_IN ");
    let mut alice = s.user("alice");
    alice.send("INBOX now");
    alice.expect("ERR BAD_ARGS wrong arguments for INBOX; try HELP INBOX");
    alice.send("INBOX");
    alice.expect("OK INBOX 0");
}
