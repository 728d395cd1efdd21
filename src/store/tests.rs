//! The store's cases, run through the storage thread's batching on every
//! backend, so the in-memory one keeps answering as SQLite does.

use super::*;
use crate::store::{
    ConvId, ConvKind, MemoryBackend, MsgState, PostgresBackend, Query, RequestState, Seq,
    SqliteBackend, StoredMessage, UserId,
};

/// Runs `test` against each backend, fresh, named for the failure message.
fn each_backend(mut test: impl FnMut(&str, &mut dyn Backend)) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let mut sqlite = SqliteBackend::open(dir.path(), blobs.clone()).unwrap();
    test("sqlite", &mut sqlite);
    test("memory", &mut MemoryBackend::new(Some(blobs.clone())));
    if let Some(db) = super::postgres::testdb::TestDb::create() {
        let mut pg = PostgresBackend::open(&db.url, blobs, true).unwrap();
        test("postgres", &mut pg);
    }
}

fn user(id: u32, name: &str) -> Write {
    Write::User {
        id: UserId(id),
        name: name.into(),
        phc: "phc".into(),
        created: 0,
    }
}

/// Message `seq` of conversation 0, sent by user 0 at time `seq`.
pub(super) fn message(seq: u64, text: &str) -> Write {
    Write::Message(StoredMessage {
        conv: ConvId(0),
        seq: Seq(seq),
        id: uuid::Uuid::from_u128(u128::from(seq)),
        sender: UserId(0),
        at: seq as i64,
        text: text.into(),
        state: MsgState::Sent,
        reply_to: None,
    })
}

fn ask(db: &mut dyn Backend, query: Query) -> Result<Answer, StoreError> {
    run_batch(db, vec![Request::query(query, ())]).remove(0).1
}

/// The seqs of a page of messages.
fn seqs(answer: Result<Answer, StoreError>) -> Vec<u64> {
    match answer {
        Ok(Answer::Messages(m)) => m.iter().map(|m| m.seq.0).collect(),
        other => panic!("{other:?}"),
    }
}

/// A taken name fails its own request as a conflict; the requests
/// committed in the same group stay durable.
#[test]
fn a_duplicate_name_is_a_conflict_and_its_neighbours_commit() {
    each_backend(|name, db| {
        let done = run_batch(
            db,
            vec![
                Request::write(vec![user(0, "alice")], Some(0)),
                Request::write(vec![user(1, "alice")], Some(1)),
                Request::write(vec![user(2, "bob")], Some(2)),
            ],
        );
        let outcome: Vec<_> = done.iter().map(|(t, r)| (*t, r.is_ok())).collect();
        assert_eq!(outcome, [(0, true), (1, false), (2, true)], "{name}");
        assert!(
            matches!(
                done[1].1,
                Err(StoreError::Conflict(_) | StoreError::NameTaken(_))
            ),
            "{name}: {:?}",
            done[1].1
        );
        let names: Vec<_> = db
            .load(10)
            .unwrap()
            .users
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["alice", "bob"], "{name}");
    });
}

/// A lower cursor written after a higher one leaves the higher value;
/// delivered and read merge each on their own.
#[test]
fn cursor_writes_merge_by_maximum() {
    each_backend(|name, db| {
        let cursor = |delivered, read| Write::Cursor {
            user: UserId(0),
            conv: ConvId(0),
            delivered: Seq(delivered),
            read: Seq(read),
        };
        let batch = [cursor(5, 4), cursor(3, 2), cursor(6, 1)]
            .into_iter()
            .map(|w| Request::write(vec![w], Some(())))
            .collect();
        let done = run_batch(db, batch);
        assert!(done.iter().all(|(_, r)| r.is_ok()), "{name}");
        let snap = db.load(10).unwrap();
        assert_eq!(
            snap.cursors,
            [(UserId(0), ConvId(0), Seq(6), Seq(4))],
            "{name}"
        );
    });
}

/// A commit with more cursor writes than one multi-row statement takes, the
/// same cursors several times inside one statement: each ends at its maxima.
#[test]
fn many_cursor_writes_in_one_commit_merge_by_maximum() {
    each_backend(|name, db| {
        // 3 users x 13 writes: two full 16-row statements and 7 rows alone.
        let writes: Vec<Write> = (0..39u64)
            .map(|i| Write::Cursor {
                user: UserId((i % 3) as u32),
                conv: ConvId(1),
                delivered: Seq((i * 7) % 40),
                read: Seq((i * 11) % 40),
            })
            .collect();
        let mut expected: Vec<_> = (0..3u32)
            .map(|u| {
                let own = || (0..39u64).filter(move |i| i % 3 == u64::from(u));
                let delivered = own().map(|i| (i * 7) % 40).max().unwrap();
                let read = own().map(|i| (i * 11) % 40).max().unwrap();
                (UserId(u), ConvId(1), Seq(delivered), Seq(read))
            })
            .collect();
        let done = run_batch(db, vec![Request::write(writes, Some(()))]);
        assert!(done.iter().all(|(_, r)| r.is_ok()), "{name}");
        let mut cursors = db.load(10).unwrap().cursors;
        cursors.sort();
        expected.sort();
        assert_eq!(cursors, expected, "{name}");
    });
}

/// Pages, sync ranges, search by words and the change's compare-and-set
/// answer alike on every backend.
#[test]
fn reads_and_changes_answer_alike() {
    each_backend(|name, db| {
        let mut writes = vec![
            user(0, "alice"),
            Write::Conv {
                id: ConvId(0),
                kind: ConvKind::Public,
                name: "#r".into(),
                created: 0,
            },
        ];
        let texts = [
            "Hello world",
            "hello there",
            "world-wide web",
            "HELLO, World!",
        ];
        for (i, text) in texts.iter().enumerate() {
            writes.push(message(i as u64 + 1, text));
        }
        assert!(
            run_batch(db, vec![Request::write(writes, Some(()))])[0]
                .1
                .is_ok()
        );
        let conv = ConvId(0);
        let before = |before, limit| Query::Before {
            conv,
            before: Seq(before),
            limit,
        };
        assert_eq!(seqs(ask(db, before(u64::MAX, 3))), [4, 3, 2], "{name}");
        assert_eq!(seqs(ask(db, before(3, 10))), [2, 1], "{name}");
        let after = Query::After {
            conv,
            after: Seq(1),
            limit: 2,
        };
        assert_eq!(seqs(ask(db, after)), [2, 3], "{name}");
        let search = |words: &[&str], before| Query::Search {
            conv,
            words: words.iter().map(|w| w.to_string()).collect(),
            before: Seq(before),
            limit: 10,
        };
        assert_eq!(
            seqs(ask(db, search(&["hello", "WORLD"], u64::MAX))),
            [4, 1],
            "{name}"
        );
        assert_eq!(seqs(ask(db, search(&["hello"], 4))), [2, 1], "{name}");
        assert_eq!(
            seqs(ask(db, search(&["world-wide"], u64::MAX))),
            [3],
            "{name}"
        );
        assert_eq!(
            seqs(ask(db, search(&["wor"], u64::MAX))),
            [0u64; 0],
            "{name}"
        );
        let change = |seq, text: Option<&str>| Query::Change {
            conv,
            seq: Seq(seq),
            text: text.map(str::to_string),
        };
        match ask(db, change(2, Some("goodbye there"))) {
            Ok(Answer::Changed { msg: m, logged }) => {
                assert_eq!(logged, None, "{name}");
                assert_eq!(
                    (m.seq, m.state, m.text.as_str()),
                    (Seq(2), MsgState::Edited, "goodbye there"),
                    "{name}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(
            seqs(ask(db, search(&["hello"], u64::MAX))),
            [4, 1],
            "{name}"
        );
        assert_eq!(seqs(ask(db, search(&["goodbye"], u64::MAX))), [2], "{name}");
        assert!(
            matches!(ask(db, change(1, None)), Ok(Answer::Changed { .. })),
            "{name}"
        );
        assert!(
            matches!(ask(db, change(1, None)), Err(StoreError::Conflict(_))),
            "{name}"
        );
        assert!(
            matches!(ask(db, change(9, None)), Err(StoreError::NotFound)),
            "{name}"
        );
        assert_eq!(seqs(ask(db, search(&["hello"], u64::MAX))), [4], "{name}");
        let snap = db.load(2).unwrap();
        let recent: Vec<_> = snap.convs[0]
            .recent
            .iter()
            .map(|m| (m.seq.0, m.state))
            .collect();
        assert_eq!(recent, [(3, MsgState::Sent), (4, MsgState::Sent)], "{name}");
        assert_eq!(snap.convs[0].last_seq, Seq(4), "{name}");
    });
}

/// The same writes load as the same snapshot from every backend; a
/// friendship's end takes its accepted request with it.
#[test]
fn snapshots_agree() {
    let mut loaded = Vec::new();
    each_backend(|_, db| {
        let writes = vec![
            user(0, "alice"),
            user(1, "bob"),
            Write::LastSeen {
                user: UserId(1),
                at: 7,
            },
            Write::Conv {
                id: ConvId(0),
                kind: ConvKind::Public,
                name: "#r".into(),
                created: 0,
            },
            Write::Member {
                conv: ConvId(0),
                user: UserId(1),
                admin: false,
                joined: 5,
            },
            Write::Member {
                conv: ConvId(0),
                user: UserId(0),
                admin: true,
                joined: 5,
            },
            Write::Member {
                conv: ConvId(0),
                user: UserId(1),
                admin: true,
                joined: 6,
            },
            message(1, "hi"),
            Write::Request {
                from: UserId(0),
                to: UserId(1),
                state: RequestState::Pending,
                at: 3,
            },
            Write::Request {
                from: UserId(1),
                to: UserId(0),
                state: RequestState::Accepted,
                at: 2,
            },
            Write::Friendship {
                a: UserId(1),
                b: UserId(0),
                since: 2,
            },
            Write::Unfriend {
                a: UserId(0),
                b: UserId(1),
            },
            Write::Cursor {
                user: UserId(1),
                conv: ConvId(0),
                delivered: Seq(1),
                read: Seq::ZERO,
            },
        ];
        assert!(
            run_batch(db, vec![Request::write(writes, Some(()))])[0]
                .1
                .is_ok()
        );
        loaded.push(format!("{:?}", db.load(10).unwrap()));
    });
    assert_eq!(loaded[0], loaded[1]);
    assert!(
        loaded[0].contains("admin: true, joined: 5"),
        "{}",
        loaded[0]
    );
}

fn post(text: &str) -> Write {
    Write::Post(Post {
        conv: ConvId(0),
        id: uuid::Uuid::from_u128(7),
        sender: UserId(0),
        at: 0,
        text: text.into(),
        blob: None,
        reply_to: None,
    })
}

/// Conversation 0, with [`post`]'s sender as its member.
fn room_of_poster() -> Vec<Write> {
    vec![
        Write::Conv {
            id: ConvId(0),
            kind: ConvKind::Public,
            name: "#r".into(),
            created: 0,
        },
        Write::Member {
            conv: ConvId(0),
            user: UserId(0),
            admin: true,
            joined: 0,
        },
    ]
}

/// The commit assigns each posted message the conversation's next seq and
/// each registration the next user id; a request whose commit fails
/// assigns nothing, so the next one leaves no hole.
#[test]
fn commits_assign_seqs_and_ids_without_holes() {
    each_backend(|name, db| {
        // The poster is a member: a shared database checks that in the commit.
        run_batch(db, vec![Request::write(room_of_poster(), Some(()))])[0]
            .1
            .as_ref()
            .unwrap();
        let done = run_batch(
            db,
            vec![
                Request::write(vec![post("one")], Some(0)),
                Request::write(vec![post("two")], Some(1)),
                Request::write(
                    vec![
                        Write::Register {
                            name: "alice".into(),
                            phc: "phc".into(),
                            created: 0,
                        },
                        post("three"),
                    ],
                    Some(2),
                ),
            ],
        );
        let assigned: Vec<_> = done.into_iter().map(|(_, r)| r.unwrap()).collect();
        assert_eq!(
            assigned,
            [
                Answer::Done(vec![Assigned::Seq(Seq(1))]),
                Answer::Done(vec![Assigned::Seq(Seq(2))]),
                Answer::Done(vec![Assigned::User(UserId(1)), Assigned::Seq(Seq(3))]),
            ],
            "{name}"
        );
        // A post whose request fails (the name is taken) takes no seq.
        let taken = Write::Register {
            name: "alice".into(),
            phc: "phc".into(),
            created: 0,
        };
        let failed = run_batch(db, vec![Request::write(vec![post("lost"), taken], Some(3))]);
        assert!(
            matches!(
                failed[0].1,
                Err(StoreError::Conflict(_) | StoreError::NameTaken(_))
            ),
            "{name}"
        );
        let next = run_batch(db, vec![Request::write(vec![post("four")], Some(4))]);
        assert_eq!(
            next[0].1.as_ref().unwrap(),
            &Answer::Done(vec![Assigned::Seq(Seq(4))]),
            "{name}"
        );
        let after = ask(
            db,
            Query::After {
                conv: ConvId(0),
                after: Seq::ZERO,
                limit: 10,
            },
        );
        assert_eq!(seqs(after), [1, 2, 3, 4], "{name}");
    });
}

/// A commit of more messages than one multi-row INSERT takes stores every
/// one, in its place, with its own text.
#[test]
fn a_large_commit_stores_every_message() {
    each_backend(|name, db| {
        let conv = Write::Conv {
            id: ConvId(0),
            kind: ConvKind::Public,
            name: "#r".into(),
            created: 0,
        };
        let writes: Vec<Write> = std::iter::once(conv)
            .chain((1..=37).map(|seq| message(seq, &format!("text {seq}"))))
            .collect();
        let done = run_batch(db, vec![Request::write(writes, Some(()))]);
        assert!(done[0].1.is_ok(), "{name}: {:?}", done[0].1);
        let page = ask(
            db,
            Query::After {
                conv: ConvId(0),
                after: Seq::ZERO,
                limit: 100,
            },
        );
        let Ok(Answer::Messages(page)) = page else {
            panic!("{name}: {page:?}")
        };
        let got: Vec<(u64, String)> = page.into_iter().map(|m| (m.seq.0, m.text)).collect();
        let want: Vec<(u64, String)> = (1..=37).map(|s| (s, format!("text {s}"))).collect();
        assert_eq!(got, want, "{name}");
    });
}

/// A reply keeps the seq it answers, whether the commit assigns its own seq
/// or the hub did, in a batch and alone.
#[test]
fn replies_keep_what_they_answer() {
    each_backend(|name, db| {
        let reply = |to: u64| {
            Write::Post(Post {
                reply_to: Some(Seq(to)),
                ..match post("re") {
                    Write::Post(p) => p,
                    _ => unreachable!("post() builds a Post"),
                }
            })
        };
        let hub_assigned = Write::Message(StoredMessage {
            reply_to: Some(Seq(2)),
            ..match message(4, "re 2") {
                Write::Message(m) => m,
                _ => unreachable!("message() builds a Message"),
            }
        });
        let mut writes = room_of_poster();
        writes.extend([post("one"), reply(1), reply(1)]);
        run_batch(db, vec![Request::write(writes, Some(0))])[0]
            .1
            .as_ref()
            .unwrap();
        run_batch(db, vec![Request::write(vec![hub_assigned], Some(1))]);
        let Ok(Answer::Messages(msgs)) = ask(
            db,
            Query::After {
                conv: ConvId(0),
                after: Seq::ZERO,
                limit: 10,
            },
        ) else {
            panic!("{name}: no messages");
        };
        let replies: Vec<_> = msgs
            .iter()
            .map(|m| (m.seq.0, m.reply_to.map(|s| s.0)))
            .collect();
        assert_eq!(
            replies,
            [(1, None), (2, Some(1)), (3, Some(1)), (4, Some(2))],
            "{name}"
        );
    });
}

/// Two writers of one PostgreSQL database, as two nodes are: the
/// conversation's counter row gives their messages one gapless sequence,
/// and a member removed through one cannot post through the other.
#[test]
fn two_writers_of_one_postgres_database_share_seqs_and_rights() {
    let Some(db) = super::postgres::testdb::TestDb::create() else {
        return;
    };
    let blobs = tempfile::tempdir().unwrap();
    let open = || PostgresBackend::open(&db.url, blobs.path().to_path_buf(), true).unwrap();
    let (mut a, mut b) = (open(), open());
    fn write(db: &mut PostgresBackend, writes: Vec<Write>) -> Result<Answer, StoreError> {
        run_batch(db, vec![Request::write(writes, Some(()))])
            .remove(0)
            .1
    }
    write(&mut a, room_of_poster()).unwrap();
    let seqs = [
        write(&mut a, vec![post("1")]),
        write(&mut b, vec![post("2")]),
        write(&mut b, vec![post("3")]),
        write(&mut a, vec![post("4")]),
    ];
    let want = [1, 2, 3, 4].map(|s| Answer::Done(vec![Assigned::Seq(Seq(s))]));
    assert_eq!(seqs.map(Result::unwrap), want);
    let kick = Write::RemoveMember {
        conv: ConvId(0),
        user: UserId(0),
    };
    write(&mut a, vec![kick]).unwrap();
    let refused = write(&mut b, vec![post("5")]);
    assert!(
        matches!(refused, Err(StoreError::NotMember(ConvId(0)))),
        "{refused:?}"
    );
    // In one group with a member's post, the refusal fails only its own
    // request, and the member's post takes the next seq.
    let bob = Write::Member {
        conv: ConvId(0),
        user: UserId(1),
        admin: false,
        joined: 0,
    };
    write(&mut a, vec![bob]).unwrap();
    let Write::Post(mut from_bob) = post("6") else {
        unreachable!()
    };
    from_bob.sender = UserId(1);
    let done = run_batch(
        &mut b,
        vec![
            Request::write(vec![post("refused again")], Some(0)),
            Request::write(vec![Write::Post(from_bob)], Some(1)),
        ],
    );
    assert!(
        matches!(done[0].1, Err(StoreError::NotMember(ConvId(0)))),
        "{:?}",
        done[0].1
    );
    assert_eq!(
        done[1].1.as_ref().unwrap(),
        &Answer::Done(vec![Assigned::Seq(Seq(5))])
    );
}

/// Node-wide changes go to the change log in the transaction that makes
/// them, with gapless ids in commit order; ids and messages the same
/// transaction settles are filled in, a failed commit logs nothing, and
/// the snapshot says where the log stood.
#[test]
fn the_change_log_holds_committed_changes_in_order() {
    use crate::chat::{Change, Msg};
    each_backend(|name, db| {
        let registered = Change::Registered {
            user: UserId(0),
            name: "carol".into(),
            phc: "phc".into(),
        };
        let away = Change::Away {
            user: UserId(9),
            text: Some("lunch".into()),
        };
        let log = |c: &Change| Write::Log(Box::new(c.clone()));
        let register = Write::Register {
            name: "carol".into(),
            phc: "phc".into(),
            created: 0,
        };
        let done = run_batch(
            db,
            vec![
                Request::write(vec![register.clone(), log(&registered)], Some(0)),
                // The same name again: its commit fails, and so does its
                // entry.
                Request::write(vec![register, log(&registered)], Some(1)),
                Request::write(room_of_poster(), None),
                Request::write(vec![log(&away)], Some(2)),
            ],
        );
        let Ok(Answer::Done(first)) = &done[0].1 else {
            panic!("{name}: {done:?}", done = done[0].1);
        };
        let carol = first.iter().find_map(Assigned::user).unwrap();
        assert_eq!(first[1], Assigned::Log(1), "{name}");
        assert!(done[1].1.is_err(), "{name}");
        assert!(
            matches!(&done[2].1, Ok(Answer::Done(a)) if a[..] == [Assigned::Log(2)]),
            "{name}: {:?}",
            done[2].1
        );
        let said = run_batch(db, vec![Request::write(vec![post("hi")], Some(()))]);
        assert!(said[0].1.is_ok(), "{name}");
        // An edit's entry holds the message as the edit left it.
        let edited = Change::Changed {
            conv: ConvId(0),
            msg: Msg::from(Post::stored(
                &match post("hi") {
                    Write::Post(p) => p,
                    _ => unreachable!(),
                },
                Seq(1),
            )),
            by: UserId(0),
            origin: None,
        };
        let mut edit = Request::query(
            Query::Change {
                conv: ConvId(0),
                seq: Seq(1),
                text: Some("hello".into()),
            },
            (),
        );
        edit.writes.push(log(&edited));
        let answer = run_batch(db, vec![edit]).remove(0).1;
        assert!(
            matches!(
                answer,
                Ok(Answer::Changed {
                    logged: Some(3),
                    ..
                })
            ),
            "{name}: {answer:?}"
        );
        let mut read_log = |after| match ask(db, Query::Log { after, limit: 10 }) {
            Ok(Answer::Log(entries)) => entries,
            other => panic!("{name}: {other:?}"),
        };
        let entries = read_log(0);
        let ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3], "{name}");
        assert_eq!(
            entries[0].change,
            Some(Change::Registered {
                user: carol,
                name: "carol".into(),
                phc: "phc".into(),
            }),
            "{name}"
        );
        assert_eq!(entries[1].change, Some(away.clone()), "{name}");
        match &entries[2].change {
            Some(Change::Changed { msg, .. }) => {
                assert_eq!(
                    (&*msg.text, msg.state),
                    ("hello", MsgState::Edited),
                    "{name}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(read_log(2).len(), 1, "{name}");
        assert_eq!(db.load(0).unwrap().log_head, 3, "{name}");
    });
}

/// Where each conversation ends and one user's cursors there, in the order
/// asked; a conversation or cursor the store lacks reads as 0.
#[test]
fn conversation_ends_carry_the_users_cursor() {
    each_backend(|name, db| {
        let mut writes = room_of_poster();
        writes.extend([message(1, "one"), message(2, "two")]);
        writes.push(Write::Cursor {
            user: UserId(0),
            conv: ConvId(0),
            delivered: Seq(2),
            read: Seq(1),
        });
        run_batch(db, vec![Request::write(writes, Some(()))])[0]
            .1
            .as_ref()
            .unwrap();
        let ends = |db: &mut dyn Backend, user| {
            let convs = vec![ConvId(9), ConvId(0)];
            match ask(db, Query::Ends { user, convs }) {
                Ok(Answer::Ends(ends)) => ends
                    .iter()
                    .map(|e| (e.last.0, e.delivered.0, e.read.0))
                    .collect::<Vec<_>>(),
                other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(ends(db, UserId(0)), [(0, 0, 0), (2, 2, 1)], "{name}");
        assert_eq!(ends(db, UserId(5)), [(0, 0, 0), (2, 0, 0)], "{name}");
    });
}

/// A joiner's cursors land at the conversation's end as the transaction
/// sees it, its own messages included, and never move a cursor back.
#[test]
fn a_join_cursor_is_the_conversations_end() {
    each_backend(|name, db| {
        let mut writes = room_of_poster();
        writes.extend([message(1, "one"), message(2, "two")]);
        writes.push(Write::JoinCursor {
            user: UserId(5),
            conv: ConvId(0),
        });
        run_batch(db, vec![Request::write(writes, Some(()))])[0]
            .1
            .as_ref()
            .unwrap();
        let later = vec![
            Write::Cursor {
                user: UserId(6),
                conv: ConvId(0),
                delivered: Seq(9),
                read: Seq(9),
            },
            post("three"),
            Write::JoinCursor {
                user: UserId(6),
                conv: ConvId(0),
            },
            Write::JoinCursor {
                user: UserId(7),
                conv: ConvId(0),
            },
        ];
        run_batch(db, vec![Request::write(later, Some(()))])[0]
            .1
            .as_ref()
            .unwrap();
        for (user, want) in [(5, (3, 2, 2)), (6, (3, 9, 9)), (7, (3, 3, 3))] {
            let query = Query::Ends {
                user: UserId(user),
                convs: vec![ConvId(0)],
            };
            let got = match ask(db, query) {
                Ok(Answer::Ends(ends)) => (ends[0].last.0, ends[0].delivered.0, ends[0].read.0),
                other => panic!("{name}: {other:?}"),
            };
            assert_eq!(got, want, "{name}: user {user}");
        }
    });
}
