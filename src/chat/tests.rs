//! Hub tests without sockets: commands in, lines out.

use super::*;
use crate::auth;
use crate::fanout::Wire;
use crate::protocol::parse;

/// Drives a hub the way the server does, answering hashing and storage
/// requests synchronously, and records every line per session as text.
struct Harness {
    hub: Hub,
    db: store::MemoryBackend,
    lines: Vec<(SessionId, String)>,
    /// Every message delivery as the one buffer it came in.
    deliveries: Vec<(SessionId, String)>,
    /// What the hub handed over for other nodes (`clustered` only).
    shared: Vec<Shared>,
    next: u64,
}

impl Harness {
    fn new(durability: Durability) -> Self {
        Harness::with_config(HubConfig {
            durability,
            ..HubConfig::default()
        })
    }

    fn with_config(cfg: HubConfig) -> Self {
        Harness {
            db: store::MemoryBackend::new(None),
            hub: Hub::new(
                cfg,
                Snapshot::default(),
                "decoy".into(),
                Box::new(FixedEnv::at(NOW)),
            ),
            lines: Vec::new(),
            deliveries: Vec::new(),
            shared: Vec::new(),
            next: 0,
        }
    }

    fn connect(&mut self) -> SessionId {
        self.next += 1;
        let sid = SessionId(self.next);
        self.hub.connect(sid);
        sid
    }

    /// Records the lines each session got, reporting deliveries to the hub
    /// at once, as if every socket took everything.
    fn record(&mut self, wire: Vec<(SessionId, Wire)>) {
        for (sid, w) in wire {
            let text = match w {
                Wire::Reply(b) | Wire::Event(b) | Wire::Complete(b, _) | Wire::Body(b) => {
                    String::from_utf8(b.to_vec()).unwrap()
                }
                Wire::Deliver { line, conv, seq } => {
                    // Delivered at once, as if the socket took it.
                    self.hub.delivered(sid, conv, seq, &mut Out::default());
                    let text = String::from_utf8(line.to_vec()).unwrap();
                    self.deliveries.push((sid, text.clone()));
                    text
                }
                Wire::Partial { lines, tag } => {
                    if let Some((conv, seq)) = tag {
                        self.hub.delivered(sid, conv, seq, &mut Out::default());
                    }
                    String::from_utf8(lines.to_vec()).unwrap()
                }
                Wire::Defer => continue,
                Wire::Close => "<close>\n".into(),
                Wire::Stats => "<stats>\n".into(),
            };
            for l in text.lines() {
                self.lines.push((sid, l.to_string()));
            }
        }
    }

    /// Runs `out` and what follows from it to the end, a loop turn per
    /// round: each ends, as in the server, with the hub's `flush_posts`.
    fn drain(&mut self, mut out: Out) {
        loop {
            self.hub.flush_posts(&mut out);
            let mut wire = Vec::new();
            crate::fanout::route(&mut self.hub, &mut out.emits, &mut wire);
            self.record(wire);
            self.shared.append(&mut out.bus);
            let mut next = Out::default();
            let waiting: Vec<_> = self.hub.streams_waiting().collect();
            for sid in waiting {
                self.hub.stream_more(sid, &mut next);
            }
            for job in out.auth.drain(..) {
                // Stand-in for argon2: the "hash" of p is "h:p".
                let outcome = match job.work {
                    auth::Work::Hash { password } => {
                        auth::Outcome::Hashed(Some(format!("h:{password}")))
                    }
                    auth::Work::Verify { password, phc } => {
                        auth::Outcome::Verified(phc == format!("h:{password}"))
                    }
                };
                self.hub.authed(
                    auth::Done {
                        outcome,
                        ctx: job.ctx,
                    },
                    &mut next,
                );
            }
            let batch: Vec<_> = out.store.drain(..).collect();
            let done = store::run_batch(&mut self.db, batch);
            if !done.is_empty() {
                self.hub.committed(
                    store::Committed {
                        done,
                        messages: 0,
                        took: std::time::Duration::ZERO,
                    },
                    &mut next,
                );
            }
            if next.is_empty() {
                return;
            }
            out = next;
        }
    }

    fn send(&mut self, sid: SessionId, line: &str) {
        let mut out = Out::default();
        match parse(line) {
            Ok(cmd) => self.hub.handle(sid, cmd, &mut out),
            Err(e) => self.hub.bad_line(sid, e, &mut out),
        }
        self.drain(out);
    }

    /// A fact from another node, handled as the bus hands it over.
    fn remote(&mut self, shared: Shared) {
        let mut out = Out::default();
        self.hub.remote(shared, &mut out);
        self.drain(out);
    }

    /// Lines from several sessions handled in one loop turn, in order.
    fn turn(&mut self, lines: &[(SessionId, &str)]) {
        let mut out = Out::default();
        for &(sid, line) in lines {
            let cmd = parse(line).unwrap();
            if self.hub.publishes_first(&cmd) {
                // As the server does: routed before the command can
                // change who hears them.
                self.hub.flush_posts(&mut out);
                let mut wire = Vec::new();
                crate::fanout::route(&mut self.hub, &mut out.emits, &mut wire);
                self.record(wire);
            }
            self.hub.handle(sid, cmd, &mut out);
        }
        self.drain(out);
    }

    /// Lines received by `sid` since the last call.
    fn take(&mut self, sid: SessionId) -> Vec<String> {
        let (mine, rest) = self.lines.drain(..).partition(|(s, _)| *s == sid);
        self.lines = rest;
        mine.into_iter().map(|(_, l)| l).collect()
    }

    /// The message deliveries `sid` got since the last call, each the
    /// buffer it came in (lines since the last `take` are kept).
    fn take_deliveries(&mut self, sid: SessionId) -> Vec<String> {
        let (mine, rest) = self.deliveries.drain(..).partition(|(s, _)| *s == sid);
        self.deliveries = rest;
        mine.into_iter().map(|(_, d)| d).collect()
    }

    fn user(&mut self, name: &str) -> SessionId {
        let sid = self.connect();
        self.send(sid, &format!("REGISTER {name} password1"));
        assert_eq!(self.take(sid), [format!("OK REGISTER {name}")]);
        sid
    }
}

/// The hub's clock in these tests: 2026-01-01T00:00:00Z, standing still.
const NOW: i64 = 1_767_225_600_000;
const NOW_TEXT: &str = "2026-01-01T00:00:00.000Z";

/// The id of the `n`th message the hub makes (FixedEnv counts from 1).
fn msgid(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

#[test]
fn commands_before_login_are_refused() {
    let mut h = Harness::new(Durability::Sync);
    let s = h.connect();
    h.send(s, "JOIN #a");
    h.send(s, "PING x");
    assert_eq!(
        h.take(s),
        [
            "ERR NOT_LOGGED_IN log in first with LOGIN <user> <password> or REGISTER <user> <password>",
            "OK PONG x"
        ]
    );
}

#[test]
fn register_login_and_bad_login_look_alike() {
    let mut h = Harness::new(Durability::Sync);
    h.user("alice");
    let s = h.connect();
    h.send(s, "LOGIN alice wrongpass");
    h.send(s, "LOGIN nobody password1");
    h.send(s, "LOGIN Alice password1");
    h.send(s, "LOGIN alice password1");
    assert_eq!(
        h.take(s),
        [
            "ERR BAD_LOGIN invalid user name or password",
            "ERR BAD_LOGIN invalid user name or password",
            "OK LOGIN alice",
            "OK SYNC 0",
            "ERR ALREADY_LOGGED_IN this session is already logged in"
        ]
    );
    let t = h.connect();
    h.send(t, "REGISTER ALICE password1");
    h.send(t, "REGISTER 9lives password1");
    h.send(t, "REGISTER bob short");
    let got = h.take(t);
    assert!(got[0].starts_with("ERR USER_EXISTS"));
    assert!(got[1].starts_with("ERR BAD_USERNAME"));
    assert!(got[2].starts_with("ERR BAD_PASSWORD"));
}

#[test]
fn room_chat_reaches_every_session_but_the_sender() {
    for durability in [Durability::Sync, Durability::Async] {
        let mut h = Harness::new(durability);
        let a1 = h.user("alice");
        let a2 = h.connect();
        h.send(a2, "LOGIN alice password1");
        assert_eq!(h.take(a2), ["OK LOGIN alice", "OK SYNC 0"]);
        let b = h.user("bob");
        h.send(a1, "JOIN #Lobby");
        h.send(b, "JOIN #lobby");
        assert_eq!(h.take(a1), ["OK JOIN #lobby created", "JOINED #lobby bob"]);
        assert_eq!(h.take(b), ["OK JOIN #lobby joined"]);
        h.take(a2);
        h.send(b, "SAY #lobby hello   there");
        let id = msgid(1);
        assert_eq!(h.take(b), [format!("OK SAY #lobby 1 {id}")]);
        let msg = format!("MSG #lobby 1 {id} bob {NOW_TEXT} hello   there");
        assert_eq!(h.take(a1), std::slice::from_ref(&msg));
        assert_eq!(h.take(a2), std::slice::from_ref(&msg));
        let c = h.user("carol");
        h.send(c, "SAY #lobby hi");
        assert_eq!(h.take(c), ["ERR NOT_MEMBER you are not a member of #lobby"]);
        h.send(c, "JOIN #lobby");
        assert_eq!(h.take(c), ["OK JOIN #lobby joined".to_string(), msg]);
    }
}

#[test]
fn presence_on_first_login_and_last_logout() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "JOIN #r");
    h.send(b, "JOIN #r");
    h.take(a);
    let b2 = h.connect();
    h.send(b2, "LOGIN bob password1");
    assert!(h.take(a).is_empty(), "second session is not news");
    let mut out = Out::default();
    h.hub.disconnect(b, &mut out);
    h.drain(out);
    assert!(h.take(a).is_empty(), "bob still has a session");
    let mut out = Out::default();
    h.hub.disconnect(b2, &mut out);
    h.drain(out);
    let got = h.take(a);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("PRESENCE bob offline 20"), "{got:?}");
    let b3 = h.connect();
    h.send(b3, "LOGIN bob password1");
    assert_eq!(h.take(a), ["PRESENCE bob online"]);
    h.send(a, "PRESENCE bob");
    assert_eq!(h.take(a), ["OK PRESENCE bob online"]);
}

#[test]
fn groups_are_invite_only_and_kicked_members_hear_nothing_more() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "CREATE #team");
    h.send(b, "JOIN #team");
    h.send(b, "WHO #team");
    assert!(h.take(b).iter().all(|l| l.starts_with("ERR ")));
    h.send(b, "ADD #team bob");
    assert_eq!(h.take(b), ["ERR NOT_MEMBER you are not a member of #team"]);
    h.send(a, "ADD #team bob");
    assert_eq!(h.take(b), ["ADDED #team bob alice"]);
    h.send(b, "KICK #team alice");
    assert_eq!(
        h.take(b),
        ["ERR NOT_ADMIN only an admin of #team can do that"]
    );
    h.send(a, "KICK #team bob");
    h.send(a, "SAY #team after");
    assert_eq!(h.take(b), ["KICKED #team bob alice"]);
    h.send(b, "SAY #team hello?");
    assert_eq!(h.take(b), ["ERR NOT_MEMBER you are not a member of #team"]);
}

#[test]
fn last_admin_leaving_promotes_longest_standing_member() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    let c = h.user("carol");
    h.send(a, "CREATE #g");
    h.send(a, "ADD #g bob");
    h.send(a, "ADD #g carol");
    h.take(b);
    h.take(c);
    h.send(a, "LEAVE #g");
    assert_eq!(h.take(c), ["LEFT #g alice", "OPPED #g bob server"]);
    h.send(b, "WHO #g");
    assert_eq!(
        h.take(b),
        [
            "LEFT #g alice",
            "OPPED #g bob server",
            "MEMBER #g bob online admin",
            "MEMBER #g carol online member",
            "OK WHO #g 2"
        ]
    );
}

#[test]
fn direct_messages_need_friendship_and_history_stays() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "SAY @bob hi");
    assert_eq!(h.take(a), ["ERR NOT_FRIENDS you and bob are not friends"]);
    h.send(a, "FRIEND ADD bob");
    assert_eq!(h.take(a), ["OK FRIEND ADD bob pending"]);
    assert_eq!(h.take(b), ["FRIEND REQUEST alice"]);
    h.send(b, "FRIEND ACCEPT alice");
    assert_eq!(h.take(a), ["FRIEND ACCEPTED bob"]);
    assert_eq!(h.take(b), ["OK FRIEND ACCEPT alice"]);
    h.send(a, "SAY @bob hi bob");
    let id = msgid(1);
    assert_eq!(h.take(a), [format!("OK SAY @bob 1 {id}")]);
    assert_eq!(
        h.take(b),
        [format!("MSG @alice 1 {id} alice {NOW_TEXT} hi bob")]
    );
    h.send(b, "FRIEND REMOVE alice");
    assert_eq!(h.take(a), ["FRIEND REMOVED bob"]);
    h.send(a, "SAY @bob still there?");
    assert_eq!(h.take(a), ["ERR NOT_FRIENDS you and bob are not friends"]);
}

#[test]
fn a_committed_batch_is_one_buffer_per_recipient_minus_senders_own_lines() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let a2 = h.connect();
    h.send(a2, "LOGIN alice password1");
    let b = h.user("bob");
    let c = h.user("carol");
    for s in [a, b, c] {
        h.send(s, "JOIN #r");
    }
    for s in [a, a2, b, c] {
        h.take(s);
    }
    // Two SAYs committed together.
    let mut out = Out::default();
    h.hub.handle(a, parse("SAY #r one").unwrap(), &mut out);
    h.hub.handle(b, parse("SAY #r two").unwrap(), &mut out);
    let delivered: Vec<(SessionId, usize)> = {
        let batch: Vec<_> = out.store.drain(..).collect();
        let done = store::run_batch(&mut h.db, batch);
        let mut next = Out::default();
        h.hub.committed(
            store::Committed {
                done,
                messages: 0,
                took: std::time::Duration::ZERO,
            },
            &mut next,
        );
        let mut wire = Vec::new();
        crate::fanout::route(&mut h.hub, &mut next.emits, &mut wire);
        let counts = wire
            .iter()
            .filter_map(|(s, w)| match w {
                Wire::Deliver { line, .. } => {
                    Some((*s, line.iter().filter(|&&b| b == b'\n').count()))
                }
                _ => None,
            })
            .collect();
        h.record(wire);
        h.drain(next);
        counts
    };
    let lines_for = |s| delivered.iter().find(|(x, _)| *x == s).map(|(_, n)| *n);
    assert_eq!(lines_for(c), Some(2), "one buffer with both messages");
    assert_eq!(
        lines_for(a2),
        Some(2),
        "alice's other session gets her message too"
    );
    assert_eq!(lines_for(a), Some(1), "the sending session gets only bob's");
    assert_eq!(lines_for(b), Some(1));
    let one = format!("MSG #r 1 {} alice {NOW_TEXT} one", msgid(1));
    let two = format!("MSG #r 2 {} bob {NOW_TEXT} two", msgid(2));
    assert_eq!(h.take(c), [one, two.clone()]);
    assert_eq!(h.take(a)[0], two);
}

/// Messages no longer in memory are read back before an EDIT or DELETE is
/// judged: only the sender edits, an admin may delete, a deleted message is
/// gone, and the session's next commands wait for the extra storage round.
#[test]
fn edit_and_delete_of_messages_older_than_memory() {
    let mut h = Harness::with_config(HubConfig {
        recent: 1,
        ..HubConfig::default()
    });
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "JOIN #r");
    h.send(b, "JOIN #r");
    for text in ["one", "two", "three"] {
        h.send(b, &format!("SAY #r {text}"));
    }
    h.take(a);
    h.take(b);
    h.send(a, "EDIT #r 1 mine now");
    assert_eq!(
        h.take(a),
        ["ERR NOT_YOURS only its sender (or, to delete, an admin) can change that message"]
    );
    let mut out = Out::default();
    h.hub.handle(b, parse("EDIT #r 1 uno").unwrap(), &mut out);
    assert!(
        !h.hub.accepts_input(b),
        "later commands wait while the message is read"
    );
    h.drain(out);
    assert!(h.hub.accepts_input(b));
    assert_eq!(h.take(b), ["OK EDIT #r 1"]);
    assert_eq!(h.take(a).len(), 1, "alice hears of the edit");
    // alice created #r, so she is its admin and may delete bob's message.
    h.send(a, "DELETE #r 2");
    assert_eq!(h.take(a), ["OK DELETE #r 2"]);
    assert_eq!(h.take(b), ["DELETED #r 2 alice"]);
    h.send(b, "EDIT #r 2 back");
    assert_eq!(h.take(b), ["ERR NO_SUCH_MESSAGE no such message"]);
    h.send(a, "HISTORY #r");
    let line = |seq: u128, state: &str, text: &str| {
        format!(
            "HISTORY #r {seq} {} bob {NOW_TEXT} {state} {text}",
            msgid(seq)
        )
    };
    assert_eq!(
        h.take(a),
        [
            line(1, "edited", "uno"),
            line(2, "deleted", ""),
            line(3, "sent", "three"),
            "OK HISTORY #r 3".to_string()
        ]
    );
}

/// A MSG line from alice: `seq` in `conv`, the hub's `n`th message.
fn alices(conv: &str, seq: u64, n: u128, text: &str) -> String {
    format!("MSG {conv} {seq} {} alice {NOW_TEXT} {text}", msgid(n))
}

/// Lines as they arrive in one buffer.
fn buffer(lines: &[&String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// alice (two sessions) and bob in `#r` and `#s`, everything so far taken.
fn two_rooms(durability: Durability) -> (Harness, [SessionId; 3]) {
    let mut h = Harness::new(durability);
    let a = h.user("alice");
    let a2 = h.connect();
    h.send(a2, "LOGIN alice password1");
    let b = h.user("bob");
    for room in ["#r", "#s"] {
        h.send(a, &format!("JOIN {room}"));
        h.send(b, &format!("JOIN {room}"));
    }
    for s in [a, a2, b] {
        h.take(s);
        h.take_deliveries(s);
    }
    (h, [a, a2, b])
}

/// Messages said in one loop turn reach each subscriber as one buffer,
/// whatever the durability: under sync the commit batches them, under
/// async the end of the turn does.
#[test]
fn messages_said_in_one_turn_are_delivered_as_one_buffer() {
    for durability in [Durability::Sync, Durability::Async] {
        let (mut h, [a, a2, b]) = two_rooms(durability);
        h.turn(&[(a, "SAY #r one"), (a, "SAY #r two"), (b, "SAY #r three")]);
        let one = alices("#r", 1, 1, "one");
        let two = alices("#r", 2, 2, "two");
        let three = format!("MSG #r 3 {} bob {NOW_TEXT} three", msgid(3));
        assert_eq!(
            h.take(a),
            [
                three.clone(),
                format!("OK SAY #r 1 {}", msgid(1)),
                format!("OK SAY #r 2 {}", msgid(2)),
                // bob's own message says he has read what came before it.
                "RECEIPT #r 2 bob read".to_string(),
            ],
            "{durability:?}"
        );
        let ok = format!("OK SAY #r 3 {}", msgid(3));
        assert_eq!(h.take(b), [one.clone(), two.clone(), ok], "{durability:?}");
        assert_eq!(h.take_deliveries(b), [buffer(&[&one, &two])]);
        assert_eq!(h.take_deliveries(a), [buffer(&[&three])]);
        assert_eq!(h.take_deliveries(a2), [buffer(&[&one, &two, &three])]);
    }
}

/// Under async, a turn's messages are grouped per conversation even when
/// SAYs to two rooms alternate: one buffer per room, in the order the rooms
/// were first said to, each room's messages in seq order.
#[test]
fn async_groups_a_turns_messages_per_conversation() {
    let (mut h, [a, _, b]) = two_rooms(Durability::Async);
    h.turn(&[
        (a, "SAY #s uno"),
        (a, "SAY #r one"),
        (a, "SAY #s dos"),
        (a, "SAY #r two"),
    ]);
    assert_eq!(
        h.take(a),
        [
            format!("OK SAY #s 1 {}", msgid(1)),
            format!("OK SAY #r 1 {}", msgid(2)),
            format!("OK SAY #s 2 {}", msgid(3)),
            format!("OK SAY #r 2 {}", msgid(4)),
        ]
    );
    assert_eq!(
        h.take_deliveries(b),
        [
            buffer(&[&alices("#s", 1, 1, "uno"), &alices("#s", 2, 3, "dos")]),
            buffer(&[&alices("#r", 1, 2, "one"), &alices("#r", 2, 4, "two")]),
        ]
    );
}

/// Under async a command after a SAY in the same turn sees the message (it
/// is published first): HISTORY lists it, a JOIN replays it and does not
/// deliver it again, and answers keep command order.
#[test]
fn async_commands_after_a_say_in_one_turn_see_it() {
    let (mut h, [a, _, b]) = two_rooms(Durability::Async);
    let c = h.user("carol");
    h.turn(&[
        (a, "SAY #r one"),
        (a, "HISTORY #r"),
        (c, "JOIN #r"),
        (a, "PING p"),
        (a, "SAY #r two"),
    ]);
    let one = alices("#r", 1, 1, "one");
    let two = alices("#r", 2, 2, "two");
    assert_eq!(
        h.take(a),
        [
            format!("OK SAY #r 1 {}", msgid(1)),
            format!("HISTORY #r 1 {} alice {NOW_TEXT} sent one", msgid(1)),
            "OK HISTORY #r 1".to_string(),
            "JOINED #r carol".to_string(),
            "OK PONG p".to_string(),
            format!("OK SAY #r 2 {}", msgid(2)),
        ]
    );
    assert_eq!(h.take(c), ["OK JOIN #r joined", &one, &two]);
    assert_eq!(h.take_deliveries(c), [buffer(&[&two])], "once each");
    assert_eq!(h.take_deliveries(b), [buffer(&[&one]), buffer(&[&two])]);
}

/// alice and bob in `#r` (sync), everything they were told so far read.
fn alice_and_bob_in_r() -> (Harness, SessionId, SessionId) {
    alice_and_bob_in_r_of(Harness::new(Durability::Sync))
}

fn alice_and_bob_in_r_of(mut h: Harness) -> (Harness, SessionId, SessionId) {
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "JOIN #r");
    h.send(b, "JOIN #r");
    h.take(a);
    h.take(b);
    (h, a, b)
}

/// Under `--durability sync` the commit assigns seqs: a SAY whose commit
/// fails takes none, and the next message has the next seq.
#[test]
fn a_failed_commit_leaves_no_hole_in_the_seqs() {
    let (mut h, a, b) = alice_and_bob_in_r();
    // alice's SAY goes to storage together with a write that cannot commit
    // (bob's name, taken), so its request fails whole.
    let mut out = Out::default();
    h.hub.handle(a, parse("SAY #r lost").unwrap(), &mut out);
    out.store[0].writes.push(Write::Register {
        name: "bob".into(),
        phc: "h:x".into(),
        created: NOW,
    });
    h.drain(out);
    assert_eq!(
        h.take(a),
        ["ERR STORAGE the server could not save that; try again"]
    );
    assert!(h.take(b).is_empty(), "nobody hears of it");
    h.send(a, "SAY #r kept");
    assert_eq!(h.take(a), [format!("OK SAY #r 1 {}", msgid(2))]);
    assert_eq!(
        h.take(b),
        [format!("MSG #r 1 {} alice {NOW_TEXT} kept", msgid(2))]
    );
}

/// A message committed elsewhere (another node) is applied through the same
/// code as the hub's own: members hear it, and it is in the history.
#[test]
fn a_change_committed_elsewhere_is_applied_like_our_own() {
    let (mut h, a, b) = alice_and_bob_in_r();
    let conv = h.hub.rooms["#r"];
    let bob = h.hub.by_name["bob"];
    let msg = Msg {
        seq: Seq(1),
        id: uuid::Uuid::from_u128(99),
        sender: bob,
        at: NOW,
        text: "from afar".into(),
        state: MsgState::Sent,
        reply_to: None,
    };
    // The other node committed it to the store both nodes share.
    let stored = store::StoredMessage {
        conv,
        seq: msg.seq,
        id: msg.id,
        sender: bob,
        at: NOW,
        text: msg.text.to_string(),
        state: MsgState::Sent,
        reply_to: None,
    };
    let write = store::Request::write(vec![Write::Message(stored)], None::<()>);
    store::run_batch(&mut h.db, vec![write]);
    let mut out = Out::default();
    let posts = vec![Posted { origin: None, msg }];
    h.hub.apply(Change::Posted { conv, posts }, &mut out);
    h.drain(out);
    let line = format!("MSG #r 1 {} bob {NOW_TEXT} from afar", msgid(99));
    assert_eq!(h.take(a), std::slice::from_ref(&line));
    assert_eq!(h.take(b), [line], "no session of this node sent it");
    h.send(a, "SAY #r reply");
    assert_eq!(h.take(a), [format!("OK SAY #r 2 {}", msgid(1))]);
}

/// A registration's id comes from its commit; one refused by the store (a
/// name another node took) leaves no account behind in memory.
#[test]
fn a_registration_the_store_refuses_leaves_no_account() {
    let mut h = Harness::new(Durability::Sync);
    let taken = Write::Register {
        name: "bob".into(),
        phc: "h:elsewhere".into(),
        created: NOW,
    };
    store::run_batch(
        &mut h.db,
        vec![store::Request::write(vec![taken], None::<()>)],
    );
    let s = h.connect();
    h.send(s, "REGISTER bob password1");
    assert_eq!(h.take(s), ["ERR USER_EXISTS that user name is taken"]);
    assert!(!h.hub.by_name.contains_key("bob"));
    h.send(s, "REGISTER carol password1");
    assert_eq!(h.take(s), ["OK REGISTER carol"]);
    assert_eq!(h.hub.by_name["carol"], UserId(2), "the store's next id");
}

/// Under `--durability sync` a new room exists once its founding commits;
/// a second JOIN meanwhile waits for it and then joins, so one name never
/// makes two rooms.
#[test]
fn a_join_of_a_room_being_founded_waits_and_joins_it() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    let mut out = Out::default();
    h.hub.handle(a, parse("JOIN #new").unwrap(), &mut out);
    h.hub.handle(b, parse("JOIN #new").unwrap(), &mut out);
    assert!(!h.hub.accepts_input(b), "bob's JOIN waits for the room");
    assert_eq!(out.store.len(), 1, "one founding, nothing for bob yet");
    h.drain(out);
    assert_eq!(h.take(a), ["OK JOIN #new created", "JOINED #new bob"]);
    assert_eq!(h.take(b), ["OK JOIN #new joined"]);
    assert!(h.hub.accepts_input(b));
    h.send(b, "WHO #new");
    assert_eq!(
        h.take(b),
        [
            "MEMBER #new alice online admin",
            "MEMBER #new bob online member",
            "OK WHO #new 2"
        ]
    );
}

/// The first messages between two friends found their direct conversation
/// once: both wait for it, then get seqs 1 and 2 in it.
#[test]
fn first_messages_between_friends_found_one_direct_conversation() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "FRIEND ADD bob");
    h.send(b, "FRIEND ACCEPT alice");
    h.take(a);
    h.take(b);
    let mut out = Out::default();
    h.hub.handle(a, parse("SAY @bob hi").unwrap(), &mut out);
    h.hub
        .handle(b, parse("SAY @alice hello").unwrap(), &mut out);
    assert_eq!(out.store.len(), 1, "one founding");
    h.drain(out);
    // Both committed in one batch: deliveries first, then the answers.
    assert_eq!(
        h.take(a),
        [
            format!("MSG @bob 2 {} bob {NOW_TEXT} hello", msgid(2)),
            format!("OK SAY @bob 1 {}", msgid(1)),
            "RECEIPT @bob 1 bob read".to_string()
        ]
    );
    assert_eq!(
        h.take(b),
        [
            format!("MSG @alice 1 {} alice {NOW_TEXT} hi", msgid(1)),
            format!("OK SAY @alice 2 {}", msgid(2))
        ]
    );
}

/// A founding whose commit fails leaves no room behind: the founder and
/// whoever waited for it are told, and the next JOIN founds it afresh.
#[test]
fn a_failed_founding_leaves_no_room() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    let mut out = Out::default();
    h.hub.handle(a, parse("JOIN #new").unwrap(), &mut out);
    h.hub.handle(b, parse("JOIN #new").unwrap(), &mut out);
    // A write that cannot commit (bob's name, taken) fails the founding.
    out.store[0].writes.push(Write::Register {
        name: "bob".into(),
        phc: "h:x".into(),
        created: NOW,
    });
    h.drain(out);
    let refused = "ERR STORAGE the server could not save that; try again";
    assert_eq!(h.take(a), [refused]);
    assert_eq!(h.take(b), [refused]);
    assert!(!h.hub.rooms.contains_key("#new"));
    h.send(b, "JOIN #new");
    assert_eq!(h.take(b), ["OK JOIN #new created"]);
}

/// Membership changes committed elsewhere go through the same code as this
/// node's: members hear them, the tables show them, and applying one twice
/// changes nothing more.
#[test]
fn membership_changes_committed_elsewhere_are_applied_like_our_own() {
    let (mut h, a, b) = alice_and_bob_in_r();
    let c = h.user("carol");
    let conv = h.hub.rooms["#r"];
    let carol = h.hub.by_name["carol"];
    let alice = h.hub.by_name["alice"];
    let joined = Change::Membership {
        conv,
        change: Membership::Joined { user: carol },
    };
    for _ in 0..2 {
        let mut out = Out::default();
        h.hub.apply(joined.clone(), &mut out);
        h.drain(out);
    }
    assert_eq!(h.take(a), ["JOINED #r carol"]);
    assert_eq!(h.take(b), ["JOINED #r carol"]);
    assert_eq!(h.take(c), ["JOINED #r carol"], "her own sessions too");
    h.send(c, "SAY #r hi");
    assert_eq!(h.take(c), [format!("OK SAY #r 1 {}", msgid(1))]);
    h.take(a);
    h.take(b);
    let kicked = Change::Membership {
        conv,
        change: Membership::Kicked {
            user: carol,
            by: alice,
        },
    };
    let mut out = Out::default();
    h.hub.apply(kicked, &mut out);
    h.drain(out);
    assert_eq!(h.take(c), ["KICKED #r carol alice"]);
    assert_eq!(h.take(b), ["KICKED #r carol alice"]);
    h.send(b, "SAY #r after");
    let after = h.take(c);
    assert!(
        after.is_empty(),
        "nothing reaches carol after the kick: {after:?}"
    );
    h.send(c, "SAY #r again");
    assert_eq!(h.take(c), ["ERR NOT_MEMBER you are not a member of #r"]);
}

/// A friendship committed elsewhere is applied like one made here: both
/// sides hear of it, and they can talk directly.
#[test]
fn friendship_changes_committed_elsewhere_are_applied_like_our_own() {
    let mut h = Harness::new(Durability::Sync);
    let a = h.user("alice");
    let b = h.user("bob");
    let alice = h.hub.by_name["alice"];
    let bob = h.hub.by_name["bob"];
    let changes = [
        FriendChange::Requested {
            from: alice,
            to: bob,
            at: NOW,
        },
        FriendChange::Accepted {
            from: alice,
            to: bob,
            at: NOW,
        },
    ];
    for change in changes {
        let mut out = Out::default();
        h.hub.apply(Change::Friendship(change), &mut out);
        h.drain(out);
    }
    assert_eq!(h.take(a), ["FRIEND REQUESTED bob", "FRIEND ACCEPTED bob"]);
    assert_eq!(h.take(b), ["FRIEND REQUEST alice", "FRIEND ACCEPTED alice"]);
    h.send(a, "SAY @bob hi");
    assert_eq!(h.take(a), [format!("OK SAY @bob 1 {}", msgid(1))]);
    h.send(b, "FRIEND LIST");
    assert_eq!(
        h.take(b),
        [
            format!("MSG @alice 1 {} alice {NOW_TEXT} hi", msgid(1)),
            "FRIENDINFO alice online".to_string(),
            "OK FRIEND LIST 1".to_string()
        ]
    );
    let mut out = Out::default();
    let removed = FriendChange::Removed {
        by: bob,
        other: alice,
    };
    h.hub.apply(Change::Friendship(removed), &mut out);
    h.drain(out);
    assert_eq!(h.take(a), ["FRIEND REMOVED bob"]);
    h.send(a, "SAY @bob still?");
    assert_eq!(h.take(a), ["ERR NOT_FRIENDS you and bob are not friends"]);
}

/// A reaction committed elsewhere is applied like one made here: the
/// members hear of it, REACTIONS lists it, and taking it back here works.
#[test]
fn reactions_committed_elsewhere_are_applied_like_our_own() {
    let (mut h, a, b) = alice_and_bob_in_r();
    h.send(a, "SAY #r lunch?");
    h.take(a);
    h.take(b);
    let change = ReactionChange {
        conv: h.hub.rooms["#r"],
        seq: Seq(1),
        user: h.hub.by_name["bob"],
        reaction: "👍".into(),
        added: true,
    };
    let mut out = Out::default();
    h.hub.apply(Change::Reaction(change), &mut out);
    h.drain(out);
    assert_eq!(h.take(a), ["REACTED #r 1 bob 👍"]);
    assert_eq!(h.take(b), ["REACTED #r 1 bob 👍"]);
    h.send(a, "REACTIONS #r 1");
    assert_eq!(h.take(a), ["REACTION #r 1 👍 bob", "OK REACTIONS #r 1 1"]);
    h.send(b, "UNREACT #r 1 👍");
    assert_eq!(h.take(b), ["OK UNREACT #r 1 👍"]);
    assert_eq!(h.take(a), ["UNREACTED #r 1 bob 👍"]);
}

/// A topic set elsewhere is applied like one set here: the members hear
/// it, TOPIC shows it, and the audit log has it.
#[test]
fn a_topic_set_elsewhere_is_applied_like_our_own() {
    let (mut h, a, b) = alice_and_bob_in_r();
    let change = Change::Topic {
        conv: h.hub.rooms["#r"],
        by: h.hub.by_name["alice"],
        topic: Some("from afar".into()),
    };
    let mut out = Out::default();
    h.hub.apply(change, &mut out);
    h.drain(out);
    assert_eq!(h.take(a), ["TOPICSET #r alice from afar"]);
    assert_eq!(h.take(b), ["TOPICSET #r alice from afar"]);
    h.send(b, "TOPIC #r");
    assert_eq!(h.take(b), ["TOPIC #r from afar", "OK TOPIC #r"]);
    h.send(a, "AUDIT #r");
    assert_eq!(
        h.take(a),
        [
            format!("AUDIT #r {NOW_TEXT} alice TOPIC - from afar"),
            "OK AUDIT #r 1".to_string()
        ]
    );
}

/// Cursor rows go to storage at most `CURSOR_ROWS` per flush, so a flush
/// never puts a row for every reader ahead of the messages beside it; the
/// rest wait for the next flush.
#[test]
fn cursor_flushes_are_paced() {
    let mut h = Harness::new(Durability::Sync);
    let readers = CURSOR_ROWS as u32 + 44;
    for user in 0..readers {
        h.hub.cursor_mut(UserId(user), ConvId(1)).delivered = Seq(1);
    }
    let mut out = Out::default();
    h.hub.flush_cursors(CURSOR_ROWS, &mut out);
    assert_eq!(out.store[0].writes.len(), CURSOR_ROWS);
    assert!(h.hub.cursors_pending());
    let mut out = Out::default();
    h.hub.flush_cursors(CURSOR_ROWS, &mut out);
    assert_eq!(out.store[0].writes.len(), 44);
    assert!(!h.hub.cursors_pending());
}

fn clustered() -> Harness {
    Harness::with_config(HubConfig {
        clustered: true,
        ..HubConfig::default()
    })
}

/// With `--bus` the hub hands over each committed change once (after its
/// commit), and listens to a conversation while a member is logged in here.
#[test]
fn a_clustered_hub_shares_its_commits_and_listens_where_its_members_are() {
    let mut h = clustered();
    let a = h.user("alice");
    let b = h.user("bob");
    h.send(a, "JOIN #r");
    h.send(b, "JOIN #r");
    let conv = h.hub.rooms["#r"];
    assert_eq!(
        h.hub.subscriptions(),
        Some(Subscriptions {
            subscribe: vec![conv],
            unsubscribe: Vec::new(),
        })
    );
    h.send(a, "SAY #r hi");
    let kinds: Vec<&str> = h
        .shared
        .iter()
        .map(|s| match s {
            Shared::Logged {
                change: Change::Registered { .. },
                ..
            } => "registered",
            Shared::Logged {
                change: Change::Founded { .. },
                ..
            } => "founded",
            Shared::Logged {
                change: Change::Membership { .. },
                ..
            } => "membership",
            Shared::Change(Change::Posted { .. }) => "posted",
            _ => "other",
        })
        .collect();
    // Node-wide changes carry their change log ids, in commit order.
    let ids: Vec<u64> = h
        .shared
        .iter()
        .filter_map(|s| match s {
            Shared::Logged { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(
        kinds,
        [
            "registered",
            "registered",
            "founded",
            "membership",
            "posted"
        ]
    );
    // The channel is kept while one member is here, dropped after the last.
    h.hub.disconnect(a, &mut Out::default());
    assert_eq!(h.hub.subscriptions(), None);
    h.hub.disconnect(b, &mut Out::default());
    assert_eq!(
        h.hub.subscriptions(),
        Some(Subscriptions {
            subscribe: Vec::new(),
            unsubscribe: vec![conv],
        })
    );
}

/// A message from the bus past a gap waits while the gap is read from the
/// store; then both go out, in order.
#[test]
fn a_message_past_a_gap_waits_for_the_store() {
    let mut h = clustered();
    let a = h.user("alice");
    h.send(a, "JOIN #r");
    h.take(a);
    let conv = h.hub.rooms["#r"];
    // Another node committed two messages; the bus brings only the second.
    committed_elsewhere(&mut h, conv, 1..=2);
    h.remote(posted_elsewhere(conv, &[2]));
    assert_eq!(heads(h.take(a)), ["MSG #r 1", "MSG #r 2"]);
    // The same message again (Redis or the store) is dropped.
    h.remote(posted_elsewhere(conv, &[2]));
    assert!(h.take(a).is_empty());
    assert_eq!(h.hub.sequencer_counts(), (0, 2, 0));
}

/// A starting node hears the bus before it reads the store, so a change
/// may reach it both ways: applied again, it changes nothing.
#[test]
fn an_account_or_conversation_heard_twice_changes_nothing() {
    let (mut h, a, _) = alice_and_bob_in_r();
    let alice = h.hub.by_name["alice"];
    let conv = h.hub.rooms["#r"];
    let members = h.hub.convs.get(conv).unwrap().members.clone();
    let mut out = Out::default();
    let again = [
        Change::Registered {
            user: alice,
            name: "alice".into(),
            phc: "h:other".into(),
        },
        Change::Founded {
            conv,
            kind: ConvKind::Public,
            name: "#r".into(),
            members,
        },
    ];
    for change in again {
        h.hub.apply(change, &mut out);
    }
    h.drain(out);
    assert_eq!(h.hub.sessions_of(alice), [a]);
    h.send(a, "ROOMS");
    assert_eq!(h.take(a), ["ROOM #r public 2 admin", "OK ROOMS 1"]);
}

/// A message another node committed in `conv`, by a user this node need
/// not know.
fn stored_elsewhere(conv: ConvId, seq: u64) -> store::StoredMessage {
    store::StoredMessage {
        conv,
        seq: Seq(seq),
        id: uuid::Uuid::from_u128(100 + u128::from(seq)),
        sender: UserId(77),
        at: NOW,
        text: format!("m{seq}"),
        state: MsgState::Sent,
        reply_to: None,
    }
}

fn committed_elsewhere(h: &mut Harness, conv: ConvId, seqs: std::ops::RangeInclusive<u64>) {
    let writes = seqs
        .map(|s| Write::Message(stored_elsewhere(conv, s)))
        .collect();
    store::run_batch(&mut h.db, vec![store::Request::write(writes, None::<()>)]);
}

/// What the bus brings of those messages.
fn posted_elsewhere(conv: ConvId, seqs: &[u64]) -> Shared {
    let posts = seqs
        .iter()
        .map(|&s| Posted {
            origin: None,
            msg: Msg::from(stored_elsewhere(conv, s)),
        })
        .collect();
    Shared::Change(Change::Posted { conv, posts })
}

/// Each line's first three words (`MSG #r 1`): enough to tell messages apart.
fn heads(lines: Vec<String>) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

/// With `--bus` a SYNC may stream messages this node has not applied yet,
/// and the node may apply them while the SYNC runs (the bus, a catch-up
/// read): either way each message reaches the syncing session once.
#[test]
fn a_sync_and_the_bus_deliver_each_message_once() {
    let (mut h, a, b) = alice_and_bob_in_r_of(clustered());
    let conv = h.hub.rooms["#r"];
    committed_elsewhere(&mut h, conv, 1..=3);
    // bob SYNCs; while the store is asked where #r ends, the bus brings
    // the first two.
    let mut out = Out::default();
    h.hub.handle(b, parse("SYNC").unwrap(), &mut out);
    h.hub.remote(posted_elsewhere(conv, &[1, 2]), &mut out);
    h.drain(out);
    assert_eq!(
        heads(h.take(b)),
        ["MSG #r 1", "MSG #r 2", "MSG #r 3", "OK SYNC 3"]
    );
    assert_eq!(heads(h.take(a)), ["MSG #r 1", "MSG #r 2"]);
    // The third comes by the bus after the stream had it; then a new one.
    let mut out = Out::default();
    h.hub.remote(posted_elsewhere(conv, &[3]), &mut out);
    h.hub.remote(posted_elsewhere(conv, &[4]), &mut out);
    h.drain(out);
    assert_eq!(heads(h.take(b)), ["MSG #r 4"]);
    assert_eq!(heads(h.take(a)), ["MSG #r 3", "MSG #r 4"]);
}

/// With `--bus` a SYNC starts at the later of this node's cursor and the
/// store's, which the user's sessions on other nodes move; a SYNC from a
/// seq the client names starts there.
#[test]
fn a_sync_starts_where_any_node_delivered() {
    let (mut h, _, b) = alice_and_bob_in_r_of(clustered());
    let conv = h.hub.rooms["#r"];
    committed_elsewhere(&mut h, conv, 1..=3);
    // Another node delivered bob the first two, and saved his cursor.
    let bob = h.hub.by_name["bob"];
    let cursor = Write::Cursor {
        user: bob,
        conv,
        delivered: Seq(2),
        read: Seq::ZERO,
    };
    store::run_batch(
        &mut h.db,
        vec![store::Request::write(vec![cursor], None::<()>)],
    );
    h.send(b, "SYNC");
    assert_eq!(heads(h.take(b)), ["MSG #r 3", "OK SYNC 1"]);
    h.send(b, "SYNC #r 1");
    assert_eq!(heads(h.take(b)), ["MSG #r 2", "MSG #r 3", "OK SYNC 2"]);
}

/// A READ on another node whose bus message was lost: the next LOGIN here
/// takes the read cursor the store has, and the user's other sessions here
/// hear the new count.
#[test]
fn a_login_takes_the_read_cursor_saved_elsewhere() {
    let (mut h, _, b) = alice_and_bob_in_r_of(clustered());
    let conv = h.hub.rooms["#r"];
    h.remote(posted_elsewhere(conv, &[1, 2, 3]));
    assert_eq!(heads(h.take(b)), ["MSG #r 1", "MSG #r 2", "MSG #r 3"]);
    let bob = h.hub.by_name["bob"];
    let cursor = Write::Cursor {
        user: bob,
        conv,
        delivered: Seq(3),
        read: Seq(2),
    };
    store::run_batch(
        &mut h.db,
        vec![store::Request::write(vec![cursor], None::<()>)],
    );
    let b2 = h.connect();
    h.send(b2, "LOGIN bob password1");
    assert_eq!(h.take(b2), ["OK LOGIN bob", "OK SYNC 0"]);
    assert_eq!(h.take(b), ["UNREAD #r 1"]);
}

/// A clustered hub that knows `#r` (alice founded it) but no longer
/// listens to it: its only member here logged out.
fn room_nobody_here_listens_to() -> (Harness, ConvId) {
    let mut h = clustered();
    let a = h.user("alice");
    h.send(a, "JOIN #r");
    let conv = h.hub.rooms["#r"];
    assert!(h.hub.subscriptions().is_some());
    h.hub.disconnect(a, &mut Out::default());
    assert!(h.hub.subscriptions().is_some());
    (h, conv)
}

/// With `--bus`, a JOIN of a room this node does not listen to replays the
/// room's newest messages from the store; what the node hears afterwards
/// of what was said before the JOIN is not news to the joiner.
#[test]
fn a_join_where_the_node_did_not_listen_replays_from_the_store() {
    let (mut h, conv) = room_nobody_here_listens_to();
    committed_elsewhere(&mut h, conv, 1..=3);
    let b = h.user("bob");
    h.send(b, "JOIN #r");
    assert_eq!(
        heads(h.take(b)),
        ["OK JOIN #r", "MSG #r 1", "MSG #r 2", "MSG #r 3"]
    );
    // The subscription's catch-up and the bus bring 2 and 3 again, then 4.
    h.remote(posted_elsewhere(conv, &[2, 3, 4]));
    assert_eq!(heads(h.take(b)), ["MSG #r 4"]);
}

/// With `--bus`, a LOGIN on a node that did not listen to the user's rooms
/// brings the node's copy of them up to date before its SYNC: INBOX right
/// after it counts what was said elsewhere meanwhile.
#[test]
fn a_login_where_the_node_did_not_listen_warms_the_rooms() {
    let (mut h, a, _) = alice_and_bob_in_r_of(clustered());
    let conv = h.hub.rooms["#r"];
    h.hub.subscriptions();
    h.hub.disconnect(a, &mut Out::default());
    h.hub.disconnect(SessionId(2), &mut Out::default());
    assert!(h.hub.subscriptions().is_some());
    committed_elsewhere(&mut h, conv, 1..=3);
    let a2 = h.connect();
    h.send(a2, "LOGIN alice password1");
    let synced = heads(h.take(a2));
    assert_eq!(
        synced,
        [
            "OK LOGIN alice",
            "MSG #r 1",
            "MSG #r 2",
            "MSG #r 3",
            "OK SYNC 3"
        ]
    );
    h.send(a2, "INBOX");
    let inbox = h.take(a2);
    assert!(inbox[0].starts_with("INBOX #r public 3 3 0 "), "{inbox:?}");
}

/// With `--bus`, a user with a session here joins, on another node, a room
/// this node does not listen to: the session gets what was said after the
/// JOIN (where the store put the joiner's cursor), nothing from before,
/// and then the bus's news, each once.
#[test]
fn a_join_elsewhere_brings_what_followed_it_to_the_sessions_here() {
    let (mut h, conv) = room_nobody_here_listens_to();
    let c = h.user("carol");
    let carol = h.hub.by_name["carol"];
    committed_elsewhere(&mut h, conv, 1..=5);
    // The JOIN on the other node committed when #r ended at 3.
    let joined_at = Write::Cursor {
        user: carol,
        conv,
        delivered: Seq(3),
        read: Seq(3),
    };
    store::run_batch(
        &mut h.db,
        vec![store::Request::write(vec![joined_at], None::<()>)],
    );
    let joined = Change::Membership {
        conv,
        change: Membership::Joined { user: carol },
    };
    h.remote(Shared::Change(joined));
    assert_eq!(
        heads(h.take(c)),
        ["JOINED #r carol", "MSG #r 4", "MSG #r 5"]
    );
    h.remote(posted_elsewhere(conv, &[4, 5, 6]));
    assert_eq!(heads(h.take(c)), ["MSG #r 6"]);
}

/// A JOIN elsewhere heard twice in one turn (the bus, then the change
/// log) brings what followed it once.
#[test]
fn a_join_elsewhere_heard_twice_brings_it_once() {
    let (mut h, conv) = room_nobody_here_listens_to();
    let c = h.user("carol");
    let carol = h.hub.by_name["carol"];
    committed_elsewhere(&mut h, conv, 1..=2);
    let joined = || {
        Shared::Change(Change::Membership {
            conv,
            change: Membership::Joined { user: carol },
        })
    };
    let mut out = Out::default();
    h.hub.remote(joined(), &mut out);
    h.hub.remote(joined(), &mut out);
    h.drain(out);
    assert_eq!(
        heads(h.take(c)),
        ["JOINED #r carol", "MSG #r 1", "MSG #r 2"]
    );
}

/// A user who joined elsewhere and left again before this node had warmed
/// the room gets nothing of it here, and hears it live after a new JOIN
/// (here, once the node listens).
#[test]
fn a_join_elsewhere_undone_before_the_warming_sends_nothing() {
    let (mut h, conv) = room_nobody_here_listens_to();
    let c = h.user("carol");
    let carol = h.hub.by_name["carol"];
    committed_elsewhere(&mut h, conv, 1..=2);
    let membership = |change| Shared::Change(Change::Membership { conv, change });
    let mut out = Out::default();
    h.hub
        .remote(membership(Membership::Joined { user: carol }), &mut out);
    h.hub
        .remote(membership(Membership::Left { user: carol }), &mut out);
    h.drain(out);
    assert_eq!(heads(h.take(c)), ["LEFT #r carol"]);
    // dave makes the node listen to #r; then carol joins again, here.
    let d = h.user("dave");
    h.send(d, "JOIN #r");
    assert!(h.hub.subscriptions().is_some());
    h.send(c, "JOIN #r");
    h.take(c);
    h.remote(posted_elsewhere(conv, &[3]));
    assert_eq!(heads(h.take(c)), ["MSG #r 3"]);
}
