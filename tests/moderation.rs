//! A room's admins against abuse: BAN and UNBAN, MUTE and UNMUTE, DEOP,
//! TOPIC (shown on JOIN and WHO), and AUDIT, the log of what they did.

mod common;

use common::{Client, Server, each_store};

/// AUDIT lines without their times: `<by> <action> <target> [<detail>]`.
fn audit(c: &mut Client, room: &str) -> Vec<String> {
    c.send(&format!("AUDIT {room}"));
    let mut lines = Vec::new();
    loop {
        let l = c.news();
        if l.starts_with("OK AUDIT ") {
            assert_eq!(l, format!("OK AUDIT {room} {}", lines.len()));
            return lines;
        }
        let p: Vec<&str> = l.splitn(5, ' ').collect();
        assert_eq!((p[0], p[1]), ("AUDIT", room), "{l}");
        assert!(p[2].ends_with('Z'), "{l}");
        lines.push(format!("{} {}", p[3], p[4]));
    }
}

#[test]
fn admins_ban_mute_deop_and_set_the_topic_and_it_is_all_audited() {
    each_store(|store| {
        let mut s = Server::with_args(store);
        let [mut alice, mut bob, mut carol] = s.room_with("#r", ["alice", "bob", "carol"]);

        // TOPIC: anyone may read it, only an admin set it.
        alice.send("TOPIC #r lunch at noon");
        alice.expect("OK TOPIC #r");
        for c in [&mut bob, &mut carol] {
            c.expect("TOPICSET #r alice lunch at noon");
        }
        bob.send("TOPIC #r mine now");
        bob.expect("ERR NOT_ADMIN only an admin of #r can do that");
        bob.send("TOPIC #r");
        bob.expect("TOPIC #r lunch at noon");
        bob.expect("OK TOPIC #r");

        // MUTE: the member may not speak until it ends or is lifted.
        alice.send("MUTE #r bob 10");
        let ok = alice.expect_prefix("OK MUTE #r bob ");
        let until = ok.rsplit(' ').next().unwrap().to_string();
        for c in [&mut bob, &mut carol] {
            c.expect(&format!("MUTED #r bob alice {until}"));
        }
        bob.send("SAY #r hello?");
        bob.expect(&format!("ERR MUTED you are muted in #r until {until}"));
        for (line, err) in [
            (
                "MUTE #r bob 0",
                "ERR BAD_ARGS a mute lasts 1 to 525600 minutes",
            ),
            ("MUTE #r nobody 5", "ERR NO_SUCH_USER no such user"),
            ("UNMUTE #r carol", "ERR NOT_MUTED carol is not muted in #r"),
            ("MUTE #r alice 5", "ERR SELF you cannot do that to yourself"),
        ] {
            alice.send(line);
            alice.expect(err);
        }
        alice.send("UNMUTE #r bob");
        alice.expect("OK UNMUTE #r bob");
        bob.expect("UNMUTED #r bob alice");
        carol.expect("UNMUTED #r bob alice");
        bob.send("SAY #r thanks");
        bob.expect_news_prefix("OK SAY #r 1 ");
        alice.expect_news_prefix("MSG #r 1 ");
        carol.expect_news_prefix("MSG #r 1 ");
        // An admin deleting another's message is in the log too.
        carol.send("SAY #r buy now");
        carol.expect_news_prefix("OK SAY #r 2 ");
        alice.expect_news_prefix("MSG #r 2 ");
        bob.expect_news_prefix("MSG #r 2 ");
        alice.send("DELETE #r 2");
        alice.expect_news("OK DELETE #r 2");
        bob.expect_news("DELETED #r 2 alice");
        carol.expect_news("DELETED #r 2 alice");

        // OP then DEOP; the last admin cannot be deopped.
        alice.send("OP #r bob");
        alice.expect("OK OP #r bob");
        bob.expect_news("OPPED #r bob alice");
        carol.expect_news("OPPED #r bob alice");
        bob.send("DEOP #r alice");
        bob.expect("OK DEOP #r alice");
        alice.expect_news("DEOPPED #r alice bob");
        carol.expect_news("DEOPPED #r alice bob");
        bob.send("DEOP #r bob");
        bob.expect("ERR LAST_ADMIN #r needs an admin; OP someone first");
        bob.send("DEOP #r carol");
        bob.expect("ERR TARGET_NOT_ADMIN carol is not an admin of #r");

        // BAN removes carol and keeps her out, even from ADD, until UNBAN.
        bob.send("BAN #r carol");
        bob.expect("OK BAN #r carol");
        alice.expect_news("BANNED #r carol bob");
        carol.expect_news("BANNED #r carol bob");
        carol.send("JOIN #r");
        carol.expect("ERR BANNED you are banned from #r");
        bob.send("ADD #r carol");
        bob.expect("ERR BANNED carol is banned from #r; UNBAN first");
        bob.send("BAN #r carol");
        bob.expect("ERR ALREADY_BANNED carol is already banned from #r");

        // It is all kept across a crash: the ban, the topic, the log.
        s.restart();
        let mut carol = s.user("carol");
        carol.send("JOIN #r");
        carol.expect("ERR BANNED you are banned from #r");
        let mut bob = s.user("bob");
        bob.send("UNBAN #r carol");
        bob.expect("OK UNBAN #r carol");
        carol.send("JOIN #r");
        carol.expect("OK JOIN #r joined");
        carol.expect("TOPIC #r lunch at noon");
        carol.expect_news_prefix("MSG #r 1 ");
        bob.expect_news("JOINED #r carol");
        bob.send("WHO #r");
        bob.expect("TOPIC #r lunch at noon");
        bob.expect("MEMBER #r alice offline member");
        bob.expect("MEMBER #r bob online admin");
        bob.expect("MEMBER #r carol online member");
        bob.expect("OK WHO #r 3");
        carol.send("AUDIT #r");
        carol.expect("ERR NOT_ADMIN only an admin of #r can do that");
        assert_eq!(
            audit(&mut bob, "#r"),
            [
                "alice TOPIC - lunch at noon",
                &*format!("alice MUTE bob {until}"),
                "alice UNMUTE bob",
                "alice DELETE carol 2",
                "alice OP bob",
                "bob DEOP alice",
                "bob BAN carol",
                "bob UNBAN carol",
            ]
        );
    });
}
