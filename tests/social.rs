//! Friends, direct conversations and group administration over real sockets:
//! every FRIEND subcommand, SAY @friend, CREATE/ADD/KICK/OP, admin
//! succession, who may see what, and all of it surviving a restart (an
//! emptied group created again on PostgreSQL too, when
//! `LINECHAT_TEST_POSTGRES` names a server).

mod common;

use common::{Client, Server, befriend, each_store, msg};

/// The last space-separated field of a line (a msgid or a timestamp).
fn last(line: &str) -> &str {
    line.rsplit(' ').next().unwrap()
}

/// Asserts `line` is `prefix` followed by an RFC 3339 UTC time; returns the time.
fn timed(line: &str, prefix: &str) -> String {
    let time = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}<time>, got {line:?}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
        "{line:?}"
    );
    time.to_string()
}

/// Makes `a` and `b` friends (a asks, b accepts) and consumes the events.
/// Logs out with QUIT. The server has handled the logout once the socket
/// closes, so this is a barrier, unlike a plain drop.
fn quit(mut c: Client) {
    c.send("QUIT");
    c.expect("OK QUIT bye");
    assert!(c.until_closed().is_empty());
}

/// A second session for an existing user.
fn login(s: &Server, name: &str) -> Client {
    let mut c = s.client();
    c.ignored.push("RECEIPT ");
    c.login(name);
    c
}

/// A new user's session. Delivery and read receipts are tested in
/// durability.rs; here they would only interleave with what is tested.
fn user(s: &Server, name: &str) -> Client {
    let mut c = s.user(name);
    c.ignored.push("RECEIPT ");
    c
}

#[test]
fn friend_request_accept_list_and_requests() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut alice2 = login(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut bob2 = login(&s, "bob");

    alice.send("FRIEND LIST");
    alice.expect("OK FRIEND LIST 0");
    alice.send("FRIEND REQUESTS");
    alice.expect("OK FRIEND REQUESTS 0");

    alice.send("FRIEND ADD Bob");
    alice.expect("OK FRIEND ADD bob pending");
    alice2.expect("FRIEND REQUESTED bob");
    bob.expect("FRIEND REQUEST alice");
    bob2.expect("FRIEND REQUEST alice");

    // A duplicate is refused and changes nothing.
    alice.send("FRIEND ADD bob");
    alice.expect("ERR REQUEST_PENDING a request to bob is already pending");
    // Only the recipient can answer.
    alice.send("FRIEND ACCEPT bob");
    alice.expect("ERR NO_REQUEST no pending request from bob");

    alice.send("FRIEND REQUESTS");
    let sent = timed(&alice.line(), "REQUEST out bob pending ");
    alice.expect("OK FRIEND REQUESTS 1");
    bob.send("FRIEND REQUESTS");
    assert_eq!(timed(&bob.line(), "REQUEST in alice pending "), sent);
    bob.expect("OK FRIEND REQUESTS 1");
    bob.send("FRIEND LIST");
    bob.expect("OK FRIEND LIST 0");

    bob.send("friend accept ALICE");
    bob.expect("OK FRIEND ACCEPT alice");
    bob2.expect("FRIEND ACCEPTED alice");
    alice.expect("FRIEND ACCEPTED bob");
    alice2.expect("FRIEND ACCEPTED bob");

    // A second answer changes nothing and tells nobody.
    bob.send("FRIEND ACCEPT alice");
    bob.expect("ERR NO_REQUEST no pending request from alice");
    bob.send("FRIEND REJECT alice");
    bob.expect("ERR NO_REQUEST no pending request from alice");
    for c in [&mut alice, &mut alice2, &mut bob2] {
        assert!(c.sync().is_empty());
    }
    alice.send("FRIEND ADD bob");
    alice.expect("ERR ALREADY_FRIENDS you and bob are already friends");
    bob.send("FRIEND ADD alice");
    bob.expect("ERR ALREADY_FRIENDS you and alice are already friends");

    alice.send("FRIEND LIST");
    alice.expect("FRIENDINFO bob online");
    alice.expect("OK FRIEND LIST 1");
    bob.send("FRIEND LIST");
    bob.expect("FRIENDINFO alice online");
    bob.expect("OK FRIEND LIST 1");
    bob.send("FRIEND REQUESTS");
    let accepted = timed(&bob.line(), "REQUEST in alice accepted ");
    assert!(accepted >= sent, "{accepted} < {sent}");
    bob.expect("OK FRIEND REQUESTS 1");
    alice.send("FRIEND REQUESTS");
    assert_eq!(timed(&alice.line(), "REQUEST out bob accepted "), accepted);
    alice.expect("OK FRIEND REQUESTS 1");

    // Friends hear of each other going offline; the list shows last-seen.
    drop(bob);
    assert!(alice.sync().is_empty(), "bob is still online on bob2");
    drop(bob2);
    let seen = timed(&alice.line(), "PRESENCE bob offline ");
    assert_eq!(timed(&alice2.line(), "PRESENCE bob offline "), seen);
    alice.send("FRIEND LIST");
    assert_eq!(timed(&alice.line(), "FRIENDINFO bob offline "), seen);
    alice.expect("OK FRIEND LIST 1");
    let _bob = login(&s, "bob");
    alice.expect("PRESENCE bob online");
    alice.send("FRIEND LIST");
    alice.expect("FRIENDINFO bob online");
    alice.expect("OK FRIEND LIST 1");
}

#[test]
fn rejected_requests_stay_rejected_and_may_be_asked_again() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut bob2 = login(&s, "bob");
    alice.send("FRIEND ADD bob");
    alice.expect("OK FRIEND ADD bob pending");
    bob.expect("FRIEND REQUEST alice");
    bob2.expect("FRIEND REQUEST alice");

    bob.send("FRIEND REJECT alice");
    bob.expect("OK FRIEND REJECT alice");
    bob2.expect("FRIEND REJECTED alice");
    alice.expect("FRIEND REJECTED bob");

    bob.send("FRIEND REJECT alice");
    bob.expect("ERR NO_REQUEST no pending request from alice");
    bob.send("FRIEND ACCEPT alice");
    bob.expect("ERR NO_REQUEST no pending request from alice");
    assert!(alice.sync().is_empty());
    assert!(bob2.sync().is_empty());

    alice.send("FRIEND LIST");
    alice.expect("OK FRIEND LIST 0");
    alice.send("FRIEND REQUESTS");
    timed(&alice.line(), "REQUEST out bob rejected ");
    alice.expect("OK FRIEND REQUESTS 1");
    bob.send("FRIEND REQUESTS");
    timed(&bob.line(), "REQUEST in alice rejected ");
    bob.expect("OK FRIEND REQUESTS 1");
    alice.send("SAY @bob so?");
    alice.expect("ERR NOT_FRIENDS you and bob are not friends");

    // Asking again starts a new pending request.
    alice.send("FRIEND ADD bob");
    alice.expect("OK FRIEND ADD bob pending");
    bob.expect("FRIEND REQUEST alice");
    bob2.expect("FRIEND REQUEST alice");
    bob.send("FRIEND REQUESTS");
    timed(&bob.line(), "REQUEST in alice pending ");
    bob.expect("OK FRIEND REQUESTS 1");
}

#[test]
fn crossing_requests_make_friends_at_once() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut bob2 = login(&s, "bob");
    alice.send("FRIEND ADD bob");
    alice.expect("OK FRIEND ADD bob pending");
    bob.expect("FRIEND REQUEST alice");
    bob2.expect("FRIEND REQUEST alice");

    bob.send("FRIEND ADD alice");
    bob.expect("OK FRIEND ADD alice accepted");
    bob2.expect("FRIEND ACCEPTED alice");
    alice.expect("FRIEND ACCEPTED bob");

    bob.send("FRIEND ACCEPT alice");
    bob.expect("ERR NO_REQUEST no pending request from alice");
    alice.send("FRIEND LIST");
    alice.expect("FRIENDINFO bob online");
    alice.expect("OK FRIEND LIST 1");
    bob.send("FRIEND LIST");
    bob.expect("FRIENDINFO alice online");
    bob.expect("OK FRIEND LIST 1");
    // One request record, accepted; no second one from bob.
    bob.send("FRIEND REQUESTS");
    timed(&bob.line(), "REQUEST in alice accepted ");
    bob.expect("OK FRIEND REQUESTS 1");
    alice.send("SAY @bob we are friends");
    alice.expect_prefix("OK SAY @bob 1 ");
    assert_eq!(msg(&bob.line()), "MSG @alice 1 alice we are friends");
    assert_eq!(msg(&bob2.line()), "MSG @alice 1 alice we are friends");
}

#[test]
fn friend_command_errors() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    for (cmd, want) in [
        (
            "FRIEND ADD alice",
            "ERR SELF you cannot do that to yourself",
        ),
        (
            "FRIEND ADD ALICE",
            "ERR SELF you cannot do that to yourself",
        ),
        ("FRIEND ADD nobody", "ERR NO_SUCH_USER no such user"),
        ("FRIEND ADD 9lives", "ERR NO_SUCH_USER no such user"),
        ("FRIEND ACCEPT nobody", "ERR NO_SUCH_USER no such user"),
        ("FRIEND REJECT nobody", "ERR NO_SUCH_USER no such user"),
        ("FRIEND REMOVE nobody", "ERR NO_SUCH_USER no such user"),
        (
            "FRIEND REMOVE alice",
            "ERR SELF you cannot do that to yourself",
        ),
        (
            "FRIEND ACCEPT bob",
            "ERR NO_REQUEST no pending request from bob",
        ),
        (
            "FRIEND REJECT bob",
            "ERR NO_REQUEST no pending request from bob",
        ),
        (
            "FRIEND ACCEPT alice",
            "ERR NO_REQUEST no pending request from alice",
        ),
        (
            "FRIEND REMOVE bob",
            "ERR NOT_FRIENDS you and bob are not friends",
        ),
        (
            "FRIEND",
            "ERR BAD_ARGS wrong arguments for FRIEND; try HELP FRIEND",
        ),
        (
            "FRIEND ADD",
            "ERR BAD_ARGS wrong arguments for FRIEND; try HELP FRIEND",
        ),
        (
            "FRIEND ADD bob carol",
            "ERR BAD_ARGS wrong arguments for FRIEND; try HELP FRIEND",
        ),
        (
            "FRIEND LIST bob",
            "ERR BAD_ARGS wrong arguments for FRIEND; try HELP FRIEND",
        ),
        (
            "FRIEND POKE bob",
            "ERR BAD_ARGS wrong arguments for FRIEND; try HELP FRIEND",
        ),
        ("SAY @bob hi", "ERR NOT_FRIENDS you and bob are not friends"),
        ("SAY @alice hi", "ERR SELF you cannot do that to yourself"),
        ("SAY @nobody hi", "ERR NO_SUCH_USER no such user"),
    ] {
        alice.send(cmd);
        alice.expect(want);
    }
    alice.send("FRIEND REQUESTS");
    alice.expect("OK FRIEND REQUESTS 0");
    assert!(bob.sync().is_empty(), "failed commands tell nobody");
}

#[test]
fn offline_users_find_requests_and_answers_after_login() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    drop(user(&s, "carol"));
    drop(user(&s, "dave"));
    alice.send("FRIEND ADD carol");
    alice.expect("OK FRIEND ADD carol pending");
    alice.send("FRIEND ADD dave");
    alice.expect("OK FRIEND ADD dave pending");

    let mut carol = login(&s, "carol");
    assert!(carol.sync().is_empty(), "requests are not pushed at login");
    carol.send("FRIEND REQUESTS");
    timed(&carol.line(), "REQUEST in alice pending ");
    carol.expect("OK FRIEND REQUESTS 1");
    // Carol answers while alice is offline.
    quit(alice);
    carol.send("FRIEND ACCEPT alice");
    carol.expect("OK FRIEND ACCEPT alice");
    let mut dave = login(&s, "dave");
    dave.send("FRIEND REJECT alice");
    dave.expect("OK FRIEND REJECT alice");

    let mut alice = login(&s, "alice");
    carol.expect("PRESENCE alice online");
    alice.send("FRIEND LIST");
    alice.expect("FRIENDINFO carol online");
    alice.expect("OK FRIEND LIST 1");
    alice.send("FRIEND REQUESTS");
    let lines = [alice.line(), alice.line()];
    alice.expect("OK FRIEND REQUESTS 2");
    // Listed oldest change first: carol accepted before dave rejected.
    timed(&lines[0], "REQUEST out carol accepted ");
    timed(&lines[1], "REQUEST out dave rejected ");
    assert!(dave.sync().is_empty(), "no presence for non-friends");
}

#[test]
fn direct_conversation_between_friends() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut alice2 = login(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut bob2 = login(&s, "bob");
    let mut carol = user(&s, "carol");

    alice.send("SAY @bob hi");
    alice.expect("ERR NOT_FRIENDS you and bob are not friends");
    befriend(&mut alice, "alice", &mut bob, "bob");
    alice2.expect("FRIEND REQUESTED bob");
    alice2.expect("FRIEND ACCEPTED bob");
    bob2.expect("FRIEND REQUEST alice");
    bob2.expect("FRIEND ACCEPTED alice");

    alice.send("SAY @Bob hi  bob");
    let ok = alice.expect_prefix("OK SAY @bob 1 ");
    let id = last(&ok).to_string();
    for (c, want) in [
        (&mut bob, "MSG @alice 1 alice hi  bob"),
        (&mut bob2, "MSG @alice 1 alice hi  bob"),
        (&mut alice2, "MSG @bob 1 alice hi  bob"),
    ] {
        let got = c.line();
        assert_eq!(msg(&got), want);
        assert_eq!(got.split(' ').nth(3), Some(id.as_str()), "{got}");
    }
    assert!(alice.sync().is_empty(), "the sender gets only its OK");

    bob2.send("SAY @alice hello alice");
    bob2.expect_prefix("OK SAY @alice 2 ");
    assert_eq!(msg(&bob.line()), "MSG @alice 2 bob hello alice");
    // Speaking read alice's message 1, which bob's other session hears.
    bob.expect("UNREAD @alice 0");
    assert_eq!(msg(&alice.line()), "MSG @bob 2 bob hello alice");
    assert_eq!(msg(&alice2.line()), "MSG @bob 2 bob hello alice");

    // Pipelined messages keep their order and seqs.
    alice.send_raw(b"SAY @bob three\nSAY @bob four\nSAY @bob five\n");
    for (seq, text) in [(3, "three"), (4, "four"), (5, "five")] {
        alice.expect_prefix(&format!("OK SAY @bob {seq} "));
        for c in [&mut bob, &mut bob2] {
            assert_eq!(msg(&c.line()), format!("MSG @alice {seq} alice {text}"));
        }
    }
    // alice had not read bob's message 2 before she spoke, which her other
    // session hears once message 3 is out (with it, or with a later batch).
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let l = alice2.line();
        seen.push(if l.starts_with("MSG ") { msg(&l) } else { l });
    }
    let unread = seen.iter().position(|l| l == "UNREAD @bob 0");
    assert!(unread.is_some_and(|at| at > 0), "{seen:?}");
    seen.retain(|l| l != "UNREAD @bob 0");
    assert_eq!(
        seen,
        [
            "MSG @bob 3 alice three",
            "MSG @bob 4 alice four",
            "MSG @bob 5 alice five"
        ]
    );
    alice.send("SAY @bob \x07bell");
    alice.expect("ERR BAD_TEXT message text may not contain control characters");
    assert!(
        carol.sync().is_empty(),
        "nobody else hears a direct message"
    );

    bob.send("FRIEND REMOVE alice");
    bob.expect("OK FRIEND REMOVE alice");
    bob2.expect("FRIEND REMOVED alice");
    alice.expect("FRIEND REMOVED bob");
    alice2.expect("FRIEND REMOVED bob");
    alice.send("SAY @bob still there?");
    alice.expect("ERR NOT_FRIENDS you and bob are not friends");
    bob.send("SAY @alice bye");
    bob.expect("ERR NOT_FRIENDS you and alice are not friends");
    bob.send("FRIEND REMOVE alice");
    bob.expect("ERR NOT_FRIENDS you and alice are not friends");
    alice.send("FRIEND LIST");
    alice.expect("OK FRIEND LIST 0");
    for c in [&mut alice2, &mut bob, &mut bob2] {
        assert!(c.sync().is_empty());
    }

    // Friends again: the same conversation continues.
    befriend(&mut bob, "bob", &mut alice, "alice");
    alice.send("SAY @bob back");
    alice.expect_prefix("OK SAY @bob 6 ");
    assert_eq!(msg(&bob.line()), "MSG @alice 6 alice back");
}

#[test]
fn direct_conversation_with_async_durability() {
    let s = Server::with_args(&["--durability", "async"]);
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    befriend(&mut alice, "alice", &mut bob, "bob");
    alice.send("SAY @bob quick");
    alice.expect_prefix("OK SAY @bob 1 ");
    assert_eq!(msg(&bob.line()), "MSG @alice 1 alice quick");
    bob.send("FRIEND REMOVE alice");
    bob.expect("OK FRIEND REMOVE alice");
    alice.expect("FRIEND REMOVED bob");
    alice.send("SAY @bob gone");
    alice.expect("ERR NOT_FRIENDS you and bob are not friends");
}

/// A removed friendship leaves no accepted request behind, even after a
/// restart, and a new FRIEND ADD is a fresh pending request.
#[test]
fn removing_a_friend_forgets_the_accepted_request() {
    let mut s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    befriend(&mut alice, "alice", &mut bob, "bob");
    alice.send("FRIEND REMOVE bob");
    alice.expect("OK FRIEND REMOVE bob");
    bob.expect("FRIEND REMOVED alice");
    alice.send("FRIEND REQUESTS");
    alice.expect("OK FRIEND REQUESTS 0");
    drop((alice, bob));
    s.restart();
    let mut alice = login(&s, "alice");
    alice.send("FRIEND REQUESTS");
    alice.expect("OK FRIEND REQUESTS 0");
    alice.send("FRIEND ADD bob");
    alice.expect("OK FRIEND ADD bob pending");
    alice.send("FRIEND REQUESTS");
    timed(&alice.line(), "REQUEST out bob pending ");
    alice.expect("OK FRIEND REQUESTS 1");
}

#[test]
fn former_friends_no_longer_see_each_others_presence() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut carol = user(&s, "carol");
    befriend(&mut alice, "alice", &mut bob, "bob");
    befriend(&mut carol, "carol", &mut bob, "bob");
    // A direct conversation exists between alice and bob.
    alice.send("SAY @bob hi");
    alice.expect_prefix("OK SAY @bob 1 ");
    bob.line();
    alice.send("FRIEND REMOVE bob");
    alice.expect("OK FRIEND REMOVE bob");
    bob.expect("FRIEND REMOVED alice");

    drop(bob);
    // Carol, still a friend, hears it: the server has handled the logout.
    timed(&carol.line(), "PRESENCE bob offline ");
    assert!(alice.sync().is_empty(), "alice is no longer bob's friend");
    let _bob = login(&s, "bob");
    carol.expect("PRESENCE bob online");
    assert!(alice.sync().is_empty(), "alice is no longer bob's friend");
}

#[test]
fn groups_are_invite_only_and_admins_manage_them() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut alice2 = login(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut carol = user(&s, "carol");
    let mut dave = user(&s, "dave");

    alice.send("CREATE #Team");
    alice.expect("OK CREATE #team");
    alice2.expect("JOINED #team alice");
    alice.send("CREATE #team");
    alice.expect("ERR ROOM_EXISTS #team already exists");
    alice.send("CREATE team");
    alice.expect_prefix("ERR BAD_ROOM ");
    bob.send("JOIN #lobby");
    bob.expect("OK JOIN #lobby created");
    bob.send("CREATE #lobby");
    bob.expect("ERR ROOM_EXISTS #lobby already exists");
    alice.send("JOIN #team");
    alice.expect("ERR ALREADY_MEMBER already a member of #team");
    alice.send("ROOMS");
    alice.expect("ROOM #team group 1 admin");
    alice.expect("OK ROOMS 1");

    // Outsiders cannot get in, look in, speak or administer.
    for (cmd, want) in [
        (
            "JOIN #team",
            "ERR INVITE_ONLY #team is invite-only; an admin must ADD you",
        ),
        ("WHO #team", "ERR NOT_MEMBER you are not a member of #team"),
        (
            "SAY #team hi",
            "ERR NOT_MEMBER you are not a member of #team",
        ),
        (
            "ADD #team bob",
            "ERR NOT_MEMBER you are not a member of #team",
        ),
        (
            "KICK #team alice",
            "ERR NOT_MEMBER you are not a member of #team",
        ),
        (
            "OP #team bob",
            "ERR NOT_MEMBER you are not a member of #team",
        ),
        (
            "LEAVE #team",
            "ERR NOT_MEMBER you are not a member of #team",
        ),
        ("ADD #nope bob", "ERR NO_SUCH_ROOM no such room"),
    ] {
        bob.send(cmd);
        bob.expect(want);
    }
    assert!(alice.sync().is_empty());

    alice.send("ADD #team Bob");
    alice.expect("OK ADD #team bob");
    bob.expect("ADDED #team bob alice");
    alice2.expect("ADDED #team bob alice");
    alice.send("ADD #team bob");
    alice.expect("ERR ALREADY_MEMBER bob is already in #team");
    alice.send("ADD #team nobody");
    alice.expect("ERR NO_SUCH_USER no such user");
    bob.send("JOIN #team");
    bob.expect("ERR ALREADY_MEMBER already a member of #team");

    // A plain member cannot administer.
    for (cmd, want) in [
        (
            "ADD #team carol",
            "ERR NOT_ADMIN only an admin of #team can do that",
        ),
        (
            "KICK #team alice",
            "ERR NOT_ADMIN only an admin of #team can do that",
        ),
        (
            "OP #team bob",
            "ERR NOT_ADMIN only an admin of #team can do that",
        ),
    ] {
        bob.send(cmd);
        bob.expect(want);
    }

    alice.send("ADD #team carol");
    alice.expect("OK ADD #team carol");
    carol.expect("ADDED #team carol alice");
    bob.expect("ADDED #team carol alice");
    alice2.expect("ADDED #team carol alice");
    carol.send("ROOMS");
    carol.expect("ROOM #team group 3 member");
    carol.expect("OK ROOMS 1");

    alice.send("OP #team dave");
    alice.expect("ERR TARGET_NOT_MEMBER dave is not in #team");
    alice.send("OP #team bob");
    alice.expect("OK OP #team bob");
    for c in [&mut bob, &mut carol, &mut alice2] {
        c.expect("OPPED #team bob alice");
    }
    // A repeat is refused like JOIN of a room you are in: nobody hears it.
    alice.send("OP #team bob");
    alice.expect("ERR ALREADY_ADMIN bob is already an admin of #team");
    for c in [&mut bob, &mut carol, &mut alice2] {
        assert!(c.sync().is_empty());
    }
    bob.send("WHO #team");
    bob.expect("MEMBER #team alice online admin");
    bob.expect("MEMBER #team bob online admin");
    bob.expect("MEMBER #team carol online member");
    bob.expect("OK WHO #team 3");
    bob.send("ROOMS");
    bob.expect("ROOM #lobby public 1 admin");
    bob.expect("ROOM #team group 3 admin");
    bob.expect("OK ROOMS 2");

    // The new admin adds and kicks.
    bob.send("ADD #team dave");
    bob.expect("OK ADD #team dave");
    for c in [&mut alice, &mut alice2, &mut carol, &mut dave] {
        c.expect("ADDED #team dave bob");
    }
    bob.send("KICK #team bob");
    bob.expect("ERR SELF you cannot do that to yourself");
    bob.send("KICK #team nobody");
    bob.expect("ERR NO_SUCH_USER no such user");
    bob.send("KICK #team carol");
    bob.expect("OK KICK #team carol");
    for c in [&mut alice, &mut alice2, &mut carol, &mut dave] {
        c.expect("KICKED #team carol bob");
    }
    bob.send("KICK #team carol");
    bob.expect("ERR TARGET_NOT_MEMBER carol is not in #team");

    // Nothing said after the kick reaches the kicked member.
    alice.send("SAY #team carol is gone");
    alice.expect_prefix("OK SAY #team 1 ");
    assert_eq!(msg(&dave.line()), "MSG #team 1 alice carol is gone");
    assert_eq!(msg(&bob.line()), "MSG #team 1 alice carol is gone");
    assert_eq!(msg(&alice2.line()), "MSG #team 1 alice carol is gone");
    carol.expect_silence();
    assert!(carol.sync().is_empty());
    for (cmd, want) in [
        (
            "SAY #team hey",
            "ERR NOT_MEMBER you are not a member of #team",
        ),
        ("WHO #team", "ERR NOT_MEMBER you are not a member of #team"),
        (
            "JOIN #team",
            "ERR INVITE_ONLY #team is invite-only; an admin must ADD you",
        ),
        ("ROOMS", "OK ROOMS 0"),
    ] {
        carol.send(cmd);
        carol.expect(want);
    }
    // Another admin can be kicked too.
    alice.send("KICK #team bob");
    alice.expect("OK KICK #team bob");
    for c in [&mut alice2, &mut bob, &mut dave] {
        c.expect("KICKED #team bob alice");
    }
    bob.send("ADD #team carol");
    bob.expect("ERR NOT_MEMBER you are not a member of #team");
    alice.send("WHO #team");
    alice.expect("MEMBER #team alice online admin");
    alice.expect("MEMBER #team dave online member");
    alice.expect("OK WHO #team 2");
    assert!(carol.sync().is_empty());
    assert!(bob.sync().is_empty());
}

#[test]
fn kicked_member_gets_nothing_even_when_messages_race_the_kick() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut bob2 = login(&s, "bob");
    alice.send("CREATE #g");
    alice.expect("OK CREATE #g");
    alice.send("ADD #g bob");
    alice.expect("OK ADD #g bob");
    bob.expect("ADDED #g bob alice");
    bob2.expect("ADDED #g bob alice");
    // KICK and SAY in one write: the SAY is handled right after the kick.
    alice.send_raw(b"KICK #g bob\nSAY #g secret plans\n");
    alice.expect("OK KICK #g bob");
    alice.expect_prefix("OK SAY #g 1 ");
    for c in [&mut bob, &mut bob2] {
        c.expect("KICKED #g bob alice");
        c.expect_silence();
        assert!(c.sync().is_empty());
    }
    // Re-added, bob hears new messages but JOIN replay is not how he gets in.
    alice.send("ADD #g bob");
    alice.expect("OK ADD #g bob");
    bob.expect("ADDED #g bob alice");
    bob2.expect("ADDED #g bob alice");
    assert!(bob.sync().is_empty(), "no history comes with ADD");
    alice.send("SAY #g welcome back");
    alice.expect_prefix("OK SAY #g 2 ");
    assert_eq!(msg(&bob.line()), "MSG #g 2 alice welcome back");
    assert_eq!(msg(&bob2.line()), "MSG #g 2 alice welcome back");
}

#[test]
fn outsiders_get_no_group_history() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut mallory = user(&s, "mallory");
    alice.send("CREATE #secret");
    alice.expect("OK CREATE #secret");
    alice.send("SAY #secret the password is swordfish");
    alice.expect_prefix("OK SAY #secret 1 ");
    mallory.send("JOIN #secret");
    mallory.expect("ERR INVITE_ONLY #secret is invite-only; an admin must ADD you");
    mallory.send("WHO #secret");
    mallory.expect("ERR NOT_MEMBER you are not a member of #secret");
    assert!(mallory.sync().is_empty(), "no MSG replay for an outsider");
    // A public room, by contrast, replays its history to a joiner.
    alice.send("JOIN #open");
    alice.expect("OK JOIN #open created");
    alice.send("SAY #open hello");
    alice.expect_prefix("OK SAY #open 1 ");
    mallory.send("WHO #open");
    mallory.expect("MEMBER #open alice online admin");
    mallory.expect("OK WHO #open 1");
    mallory.send("JOIN #open");
    mallory.expect("OK JOIN #open joined");
    assert_eq!(msg(&mallory.line()), "MSG #open 1 alice hello");
}

#[test]
fn last_admin_leaving_hands_the_group_to_the_longest_standing_member() {
    let s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut carol = user(&s, "carol");
    let mut dave = user(&s, "dave");
    alice.send("CREATE #g");
    alice.expect("OK CREATE #g");
    for who in ["bob", "carol", "dave"] {
        alice.send(&format!("ADD #g {who}"));
        alice.expect(&format!("OK ADD #g {who}"));
    }
    bob.sync();
    carol.sync();
    dave.sync();

    // An admin leaving while another admin remains: no succession.
    alice.send("OP #g carol");
    alice.expect("OK OP #g carol");
    for c in [&mut bob, &mut carol, &mut dave] {
        c.expect("OPPED #g carol alice");
    }
    alice.send("LEAVE #g");
    alice.expect("OK LEAVE #g");
    for c in [&mut bob, &mut carol, &mut dave] {
        c.expect("LEFT #g alice");
        assert!(c.sync().is_empty());
    }
    // The last admin leaves: bob has been a member longest.
    carol.send("LEAVE #g");
    carol.expect("OK LEAVE #g");
    for c in [&mut bob, &mut dave] {
        c.expect("LEFT #g carol");
        c.expect("OPPED #g bob server");
    }
    assert!(carol.sync().is_empty(), "a leaver hears no more");
    assert!(alice.sync().is_empty());
    dave.send("WHO #g");
    dave.expect("MEMBER #g bob online admin");
    dave.expect("MEMBER #g dave online member");
    dave.expect("OK WHO #g 2");
    bob.send("ADD #g carol");
    bob.expect("OK ADD #g carol");
    dave.expect("ADDED #g carol bob");
    carol.expect("ADDED #g carol bob");
    // Carol, re-added, is now the newest member.
    bob.send("LEAVE #g");
    bob.expect("OK LEAVE #g");
    for c in [&mut dave, &mut carol] {
        c.expect("LEFT #g bob");
        c.expect("OPPED #g dave server");
    }
    carol.send("WHO #g");
    carol.expect("MEMBER #g dave online admin");
    carol.expect("MEMBER #g carol online member");
    carol.expect("OK WHO #g 2");
}

#[test]
fn friends_and_groups_survive_a_restart() {
    let mut s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    let mut carol = user(&s, "carol");
    let mut dave = user(&s, "dave");
    befriend(&mut alice, "alice", &mut bob, "bob");
    alice.send("FRIEND ADD carol");
    alice.expect("OK FRIEND ADD carol pending");
    carol.expect("FRIEND REQUEST alice");
    dave.send("FRIEND ADD alice");
    dave.expect("OK FRIEND ADD alice pending");
    alice.expect("FRIEND REQUEST dave");
    alice.send("FRIEND REJECT dave");
    alice.expect("OK FRIEND REJECT dave");
    dave.expect("FRIEND REJECTED alice");
    alice.send("SAY @bob before");
    alice.expect_prefix("OK SAY @bob 1 ");
    bob.line();

    alice.send("CREATE #g");
    alice.expect("OK CREATE #g");
    for who in ["bob", "carol"] {
        alice.send(&format!("ADD #g {who}"));
        alice.expect(&format!("OK ADD #g {who}"));
    }
    alice.send("OP #g carol");
    alice.expect("OK OP #g carol");
    alice.send("JOIN #pub");
    alice.expect("OK JOIN #pub created");

    alice.send("FRIEND REQUESTS");
    let requests: Vec<String> = (0..3).map(|_| alice.line()).collect();
    alice.expect("OK FRIEND REQUESTS 3");
    drop(bob);
    let seen = timed(&alice.line(), "PRESENCE bob offline ");
    // A command that waits for its commit: everything before it is on disk.
    alice.send("LEAVE #pub");
    alice.expect("OK LEAVE #pub");
    drop((alice, carol, dave));

    s.restart();
    let mut alice = user(&s, "alice");
    alice.send("FRIEND LIST");
    assert_eq!(timed(&alice.line(), "FRIENDINFO bob offline "), seen);
    alice.expect("OK FRIEND LIST 1");
    alice.send("FRIEND REQUESTS");
    for want in &requests {
        alice.expect(want);
    }
    alice.expect("OK FRIEND REQUESTS 3");
    alice.send("ROOMS");
    alice.expect("ROOM #g group 3 admin");
    alice.expect("OK ROOMS 1");
    alice.send("WHO #g");
    alice.expect("MEMBER #g alice online admin");
    alice.expect("MEMBER #g bob offline member");
    alice.expect("MEMBER #g carol offline admin");
    alice.expect("OK WHO #g 3");

    // Everything still works from the restored state.
    let mut bob = user(&s, "bob");
    alice.expect("PRESENCE bob online");
    alice.send("SAY @bob after");
    alice.expect_prefix("OK SAY @bob 2 ");
    assert_eq!(msg(&bob.line()), "MSG @alice 2 alice after");
    bob.send("JOIN #g");
    bob.expect("ERR ALREADY_MEMBER already a member of #g");
    let mut mallory = user(&s, "mallory");
    mallory.send("JOIN #g");
    mallory.expect("ERR INVITE_ONLY #g is invite-only; an admin must ADD you");
    let mut carol = user(&s, "carol");
    alice.expect("PRESENCE carol online");
    bob.expect("PRESENCE carol online");
    carol.send("FRIEND REQUESTS");
    timed(&carol.line(), "REQUEST in alice pending ");
    carol.expect("OK FRIEND REQUESTS 1");
    carol.send("FRIEND ACCEPT alice");
    carol.expect("OK FRIEND ACCEPT alice");
    alice.expect("FRIEND ACCEPTED carol");
    let mut dave = user(&s, "dave");
    dave.send("FRIEND ACCEPT alice");
    dave.expect("ERR NO_REQUEST no pending request from alice");
    // Carol is still admin after the restart: she can KICK.
    carol.send("KICK #g bob");
    carol.expect("OK KICK #g bob");
    alice.expect("KICKED #g bob carol");
    bob.expect("KICKED #g bob carol");

    // Succession after a restart, and that it too is durable.
    alice.send("LEAVE #g");
    alice.expect("OK LEAVE #g");
    carol.expect("LEFT #g alice");
    carol.send("ADD #g dave");
    carol.expect("OK ADD #g dave");
    dave.expect("ADDED #g dave carol");
    carol.send("LEAVE #g");
    carol.expect("OK LEAVE #g");
    dave.expect("LEFT #g carol");
    dave.expect("OPPED #g dave server");
    drop((alice, bob, carol, dave, mallory));
    s.restart();
    let mut dave = user(&s, "dave");
    dave.send("ROOMS");
    dave.expect("ROOM #g group 1 admin");
    dave.expect("OK ROOMS 1");
}

#[test]
fn a_group_everyone_left_can_be_created_afresh() {
    let mut s = Server::start();
    let mut alice = user(&s, "alice");
    let mut bob = user(&s, "bob");
    alice.send("CREATE #solo");
    alice.expect("OK CREATE #solo");
    alice.send("SAY #solo old secret");
    alice.expect_prefix("OK SAY #solo 1 ");
    alice.send("LEAVE #solo");
    alice.expect("OK LEAVE #solo");
    // Nobody is left to ADD anyone: the group is gone, and its name free.
    bob.send("JOIN #solo");
    bob.expect("ERR INVITE_ONLY #solo is invite-only; an admin must ADD you");
    bob.send("CREATE #solo");
    bob.expect("OK CREATE #solo");
    bob.send("SAY #solo new start");
    bob.expect_prefix("OK SAY #solo 1 ");
    alice.send("CREATE #solo");
    alice.expect("ERR ROOM_EXISTS #solo already exists");
    drop((alice, bob));
    s.restart();
    let mut bob = user(&s, "bob");
    bob.send("ROOMS");
    bob.expect("ROOM #solo group 1 admin");
    bob.expect("OK ROOMS 1");
    bob.send("SAY #solo still mine");
    bob.expect_prefix("OK SAY #solo 2 ");
    let mut alice = user(&s, "alice");
    alice.send("ROOMS");
    alice.expect("OK ROOMS 0");
    alice.send("CREATE #solo");
    alice.expect("ERR ROOM_EXISTS #solo already exists");
}

/// A group whose last member left can be created again: a new group,
/// without the old history, which is still the one of that name after a
/// restart. On either store: PostgreSQL keeps room names unique, so the
/// founding retires the emptied group's name in its own transaction.
#[test]
fn an_emptied_group_is_created_again_and_survives_a_restart() {
    each_store(|store| {
        let mut s = Server::with_args(store);
        let mut alice = s.user("alice");
        alice.send("CREATE #g");
        alice.expect("OK CREATE #g");
        alice.send("SAY #g old");
        alice.expect_prefix("OK SAY #g 1 ");
        alice.send("LEAVE #g");
        alice.expect("OK LEAVE #g");
        let mut bob = s.user("bob");
        bob.send("CREATE #g");
        bob.expect("OK CREATE #g");
        bob.send("SAY #g new");
        bob.expect_prefix("OK SAY #g 1 ");
        s.restart();
        let mut bob = s.client();
        bob.login("bob");
        bob.send("HISTORY #g");
        let row = bob.expect_prefix("HISTORY #g 1 ");
        let fields: Vec<&str> = row.splitn(8, ' ').collect();
        assert_eq!((fields[4], fields[6], fields[7]), ("bob", "sent", "new"));
        bob.expect("OK HISTORY #g 1");
        let mut alice = s.client();
        alice.login("alice");
        alice.send("JOIN #g");
        alice.expect("ERR INVITE_ONLY #g is invite-only; an admin must ADD you");
    });
}
