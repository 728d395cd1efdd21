//! REPLY: a message that answers an earlier one of its conversation, shown
//! as `[re <seq>] <text>` wherever the message is shown, and kept across a
//! restart.

mod common;

use common::{Server, befriend, each_store, history, msg};

#[test]
fn a_reply_names_the_message_it_answers_everywhere_it_is_shown() {
    each_store(|store| {
        let mut s = Server::with_args(store);
        let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]);
        bob.send("SAY #r lunch?");
        bob.expect_news_prefix("OK SAY #r 1 ");
        assert_eq!(msg(&alice.news()), "MSG #r 1 bob lunch?");
        alice.send("REPLY #r 1 yes, at noon");
        alice.expect_news_prefix("OK REPLY #r 2 ");
        assert_eq!(msg(&bob.news()), "MSG #r 2 alice [re 1] yes, at noon");

        // Editing keeps what it answers.
        alice.send("EDIT #r 2 yes, at one");
        alice.expect_news("OK EDIT #r 2");
        let edited = bob.news();
        let p: Vec<&str> = edited.splitn(6, ' ').collect();
        assert_eq!(
            (p[0], p[1], p[2], p[4], p[5]),
            ("EDITED", "#r", "2", "alice", "[re 1] yes, at one"),
            "{edited}"
        );

        // A reply to nothing, or to a deleted message, is refused.
        for bad in ["REPLY #r 0 hm", "REPLY #r 3 hm"] {
            alice.send(bad);
            alice.expect_news("ERR NO_SUCH_MESSAGE no such message");
        }
        alice.send("REPLY #r 1");
        alice.expect_news("ERR BAD_ARGS wrong arguments for REPLY; try HELP REPLY");
        alice.send("REPLY #r x hm");
        alice.expect_news("ERR BAD_ARGS wrong arguments for REPLY; try HELP REPLY");
        // Nobody can pass a message off as a reply.
        alice.send("SAY #r [re 1] fake");
        alice.expect_news(
        "ERR BAD_TEXT text starting with [file, [image or [re is reserved for attachments and replies",
    );
        bob.send("DELETE #r 1");
        bob.expect_news("OK DELETE #r 1");
        alice.expect_news_prefix("DELETED #r 1 bob");
        alice.send("REPLY #r 1 too late");
        alice.expect_news("ERR NO_SUCH_MESSAGE no such message");

        // HISTORY and SYNC show it, and so does a restart.
        let shown = ["1 bob deleted ", "2 alice edited [re 1] yes, at one"];
        assert_eq!(history(&mut bob, "HISTORY #r"), shown);
        s.restart();
        let mut carol = s.user("carol");
        carol.send("JOIN #r");
        carol.expect("OK JOIN #r joined");
        assert_eq!(msg(&carol.news()), "MSG #r 2 alice [re 1] yes, at one");
        assert_eq!(history(&mut carol, "HISTORY #r"), shown);
    });
}

#[test]
fn friends_reply_in_their_direct_conversation() {
    let s = Server::start();
    let mut alice = s.user("alice");
    let mut bob = s.user("bob");
    befriend(&mut alice, "alice", &mut bob, "bob");
    alice.send("SAY @bob ping");
    alice.expect_news_prefix("OK SAY @bob 1 ");
    assert_eq!(msg(&bob.news()), "MSG @alice 1 alice ping");
    bob.send("REPLY @alice 1 pong");
    bob.expect_news_prefix("OK REPLY @alice 2 ");
    assert_eq!(msg(&alice.news()), "MSG @bob 2 bob [re 1] pong");
    // A stranger has no conversation to reply in.
    let mut carol = s.user("carol");
    carol.send("REPLY @alice 1 me too");
    carol.expect("ERR NO_SUCH_CONVERSATION no conversation with alice yet");
}
