//! AWAY: online but away, with a text, shown by PRESENCE, FRIEND LIST and
//! WHO, announced to watchers like going online; cleared when the user's
//! last session ends.

mod common;

use common::{Server, befriend};

#[test]
fn away_and_back_reach_the_watchers() {
    let s = Server::start();
    let [mut alice, mut bob] = s.room_with("#r", ["alice", "bob"]);
    befriend(&mut alice, "alice", &mut bob, "bob");
    alice.send("AWAY gone to lunch");
    alice.expect("OK AWAY gone to lunch");
    bob.expect("PRESENCE alice away gone to lunch");
    bob.send("PRESENCE alice");
    bob.expect("OK PRESENCE alice away gone to lunch");
    bob.send("FRIEND LIST");
    bob.expect("FRIENDINFO alice away gone to lunch");
    bob.expect("OK FRIEND LIST 1");
    bob.send("WHO #r");
    bob.expect("MEMBER #r alice away admin");
    bob.expect("MEMBER #r bob online member");
    bob.expect("OK WHO #r 2");
    // The same text again changes nothing, and tells no one.
    alice.send("AWAY gone to lunch");
    alice.expect("OK AWAY gone to lunch");
    bob.send("PING");
    bob.expect("OK PONG");
    alice.send("AWAY \x07");
    alice.expect("ERR BAD_TEXT message text may not contain control characters");
    alice.send("AWAY");
    alice.expect("OK AWAY");
    bob.expect("PRESENCE alice online");

    // Away ends with the last session: the next login is online.
    alice.send("AWAY brb");
    alice.expect("OK AWAY brb");
    bob.expect("PRESENCE alice away brb");
    alice.send("QUIT");
    alice.expect("OK QUIT bye");
    bob.expect_prefix("PRESENCE alice offline ");
    let _alice = s.user("alice");
    bob.expect("PRESENCE alice online");
}
