//! REACT, UNREACT and REACTIONS: reactions on messages, their events, their
//! counts in HISTORY, and their survival across a restart.

mod common;

use common::{Client, Server, each_store};

/// HISTORY of `conv`, each line cut after its state: `<seq> <sender>
/// <state> <text>` or the `REACTIONS ...` line that follows a message.
fn history_with_reactions(c: &mut Client, conv: &str) -> Vec<String> {
    c.send(&format!("HISTORY {conv}"));
    let mut lines = Vec::new();
    loop {
        let l = c.news();
        if l.starts_with("OK HISTORY ") {
            return lines;
        }
        if l.starts_with("REACTIONS ") {
            lines.push(l);
            continue;
        }
        let p: Vec<&str> = l.splitn(8, ' ').collect();
        lines.push(format!("{} {} {} {}", p[2], p[4], p[6], p[7]));
    }
}

#[test]
fn reactions_are_announced_counted_in_history_and_kept() {
    each_store(|store| {
        let mut s = Server::with_args(store);
        let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]);
        bob.send("SAY #r lunch?");
        bob.expect_prefix("OK SAY #r 1 ");
        alice.expect_news_prefix("MSG #r 1 ");
        alice.send("REACT #r 1 👍");
        alice.expect_news("OK REACT #r 1 👍");
        bob.expect_news("REACTED #r 1 alice 👍");
        bob.send("REACT #r 1 👍");
        bob.expect_news("OK REACT #r 1 👍");
        alice.expect_news("REACTED #r 1 bob 👍");
        alice.send("REACT #r 1 yum");
        alice.expect_news("OK REACT #r 1 yum");
        bob.expect_news("REACTED #r 1 alice yum");

        // Refusals, each with its own code; the session goes on.
        for (line, err) in [
            (
                "REACT #r 1 👍",
                "ERR ALREADY_REACTED you already reacted that way",
            ),
            (
                "UNREACT #r 1 ❤",
                "ERR NOT_REACTED you have not reacted that way",
            ),
            ("REACT #r 2 👍", "ERR NO_SUCH_MESSAGE no such message"),
            (
                "REACT #r 1 two words",
                "ERR BAD_ARGS wrong arguments for REACT; try HELP REACT",
            ),
            (
                &*format!("REACT #r 1 {}", "x".repeat(33)),
                "ERR BAD_REACTION a reaction is 1-32 bytes without spaces or control characters, e.g. an emoji",
            ),
        ] {
            alice.send(line);
            alice.expect_news(err);
        }
        for n in 3..=8 {
            alice.send(&format!("REACT #r 1 r{n}"));
            alice.expect_news(&format!("OK REACT #r 1 r{n}"));
            bob.expect_news(&format!("REACTED #r 1 alice r{n}"));
        }
        alice.send("REACT #r 1 r9");
        alice.expect_news("ERR TOO_MANY_REACTIONS at most 8 reactions per user and message");
        for n in 3..=8 {
            alice.send(&format!("UNREACT #r 1 r{n}"));
            alice.expect_news(&format!("OK UNREACT #r 1 r{n}"));
            bob.expect_news(&format!("UNREACTED #r 1 alice r{n}"));
        }
        let mut carol = s.user("carol");
        carol.send("REACT #r 1 👍");
        carol.expect("ERR NOT_MEMBER you are not a member of #r");

        // Who reacted how, in the order they did.
        bob.send("REACTIONS #r 1");
        for line in [
            "REACTION #r 1 👍 alice",
            "REACTION #r 1 👍 bob",
            "REACTION #r 1 yum alice",
            "OK REACTIONS #r 1 3",
        ] {
            bob.expect_news(line);
        }
        bob.send("SAY #r noon?");
        bob.expect_prefix("OK SAY #r 2 ");
        alice.expect_news_prefix("MSG #r 2 ");
        let shown = [
            "1 bob sent lunch?",
            "REACTIONS #r 1 👍 2 yum 1",
            "2 bob sent noon?",
        ];
        assert_eq!(history_with_reactions(&mut alice, "#r"), shown);

        // Acknowledged reactions survive a crash.
        s.restart();
        let mut alice = s.user("alice");
        assert_eq!(history_with_reactions(&mut alice, "#r"), shown);

        // A deleted message shows none, and takes no more.
        let mut bob = s.user("bob");
        alice.expect("PRESENCE bob online");
        bob.send("DELETE #r 1");
        bob.expect_news("OK DELETE #r 1");
        alice.expect_news("DELETED #r 1 bob");
        assert_eq!(
            history_with_reactions(&mut alice, "#r"),
            ["1 bob deleted ", "2 bob sent noon?"]
        );
        alice.send("REACT #r 1 👀");
        alice.expect_news("ERR NO_SUCH_MESSAGE no such message");
    });
}
