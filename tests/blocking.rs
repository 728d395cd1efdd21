//! FRIEND BLOCK: no friend requests, direct messages or typing from the
//! blocked user, who is never told; FRIEND UNBLOCK undoes it.

mod common;

use common::{Server, befriend, each_store};

#[test]
fn a_blocked_user_cannot_reach_the_blocker_and_is_not_told() {
    each_store(|store| {
        let mut s = Server::with_args(store);
        let [mut alice, mut bob, mut carol] = s.room_with("#r", ["alice", "bob", "carol"]);
        let mut alice2 = s.user("alice");
        befriend(&mut alice, "alice", &mut bob, "bob");
        alice2.expect("FRIEND REQUESTED bob");
        alice2.expect("FRIEND ACCEPTED bob");

        // Blocking a friend ends the friendship, as FRIEND REMOVE does: that
        // is all bob hears.
        alice.send("FRIEND BLOCK bob");
        alice.expect("OK FRIEND BLOCK bob");
        bob.expect("FRIEND REMOVED alice");
        alice2.expect("FRIEND REMOVED bob");
        alice2.expect("FRIEND BLOCKED bob");
        bob.send("SAY @alice hi");
        bob.expect("ERR NOT_FRIENDS you and alice are not friends");

        // bob's requests look sent, and alice never sees them.
        bob.send("FRIEND ADD alice");
        bob.expect("OK FRIEND ADD alice pending");
        bob.send("FRIEND REQUESTS");
        bob.expect_prefix("REQUEST out alice pending ");
        bob.expect("OK FRIEND REQUESTS 1");
        alice.send("FRIEND REQUESTS");
        alice.expect("OK FRIEND REQUESTS 0");
        alice.send("FRIEND ACCEPT bob");
        alice.expect("ERR NO_REQUEST no pending request from bob");
        alice.send("FRIEND ADD bob");
        alice.expect("ERR BLOCKED you block bob; FRIEND UNBLOCK them first");

        // Typing in a shared room reaches everyone but the blocker.
        bob.send("TYPING #r");
        bob.expect("OK TYPING #r");
        carol.expect("TYPING #r bob");
        alice.send("PING");
        alice.expect("OK PONG");

        for (line, err) in [
            (
                "FRIEND BLOCK bob",
                "ERR ALREADY_BLOCKED you already block bob",
            ),
            (
                "FRIEND BLOCK alice",
                "ERR SELF you cannot do that to yourself",
            ),
            ("FRIEND BLOCK nobody", "ERR NO_SUCH_USER no such user"),
            (
                "FRIEND UNBLOCK carol",
                "ERR NOT_BLOCKED you do not block carol",
            ),
        ] {
            alice.send(line);
            alice.expect(err);
        }

        // It is kept across a crash.
        s.restart();
        let mut alice = s.user("alice");
        alice.send("FRIEND BLOCKED");
        alice.expect("BLOCKED bob");
        alice.expect("OK FRIEND BLOCKED 1");
        let mut bob = s.user("bob");
        alice.expect("PRESENCE bob online");

        // Unblocked, bob's waiting request shows, and they can be friends.
        alice.send("FRIEND UNBLOCK bob");
        alice.expect("OK FRIEND UNBLOCK bob");
        alice.send("FRIEND REQUESTS");
        alice.expect_prefix("REQUEST in bob pending ");
        alice.expect("OK FRIEND REQUESTS 1");
        alice.send("FRIEND ACCEPT bob");
        alice.expect("OK FRIEND ACCEPT bob");
        bob.expect("FRIEND ACCEPTED alice");
        bob.send("SAY @alice hello again");
        bob.expect_prefix("OK SAY @alice ");
    });
}
