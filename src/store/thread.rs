//! The storage thread: group commit of queued requests, answers in order.

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use super::{Answer, Backend, Committed, Request, StoreError, Write};

/// Most requests a single transaction takes, so one commit stays short.
const MAX_BATCH: usize = 4096;

/// Handle to the storage thread; dropping it makes the thread finish its
/// queue, commit, and exit.
pub struct Storage<C> {
    tx: mpsc::Sender<Request<C>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<C: Send + 'static> Storage<C> {
    pub fn start(
        mut backend: Box<dyn Backend>,
        done: mpsc::Sender<Committed<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Request<C>>();
        let thread = thread::Builder::new()
            .name("storage".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let started = Instant::now();
                    let done_tokens = run_batch(backend.as_mut(), batch);
                    if done_tokens.is_empty() {
                        continue;
                    }
                    let committed = Committed {
                        done: done_tokens,
                        took: started.elapsed(),
                    };
                    if done.send(committed).is_err() {
                        return;
                    }
                    wake();
                }
            })
            .expect("spawning the storage thread");
        Storage {
            tx,
            thread: Some(thread),
        }
    }

    pub fn submit(&self, req: Request<C>) {
        if self.tx.send(req).is_err() {
            log::error!("storage thread is gone; write dropped");
        }
    }
}

impl<C> Drop for Storage<C> {
    fn drop(&mut self) {
        // Closing the channel lets the thread drain and exit (dropping the
        // backend, which finishes its own work); joining makes shutdown wait
        // for the last commit.
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs one round: consecutive write-only requests share one transaction
/// (group commit); a request with a query runs in its own, in its place, so
/// answers keep submission order.
pub fn run_batch<C>(
    backend: &mut dyn Backend,
    batch: Vec<Request<C>>,
) -> Vec<(C, Result<Answer, StoreError>)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut group = Vec::new();
    for req in batch {
        let Some(query) = &req.query else {
            group.push(req);
            continue;
        };
        commit_group(backend, std::mem::take(&mut group), &mut out);
        let writes: Vec<&Write> = req.writes.iter().collect();
        let answer = backend.query(&writes, query);
        if let Err(e) = &answer
            && e.is_failure()
        {
            log::error!("storage query failed: {e}");
        }
        if let Some(token) = req.done {
            out.push((token, answer));
        }
    }
    commit_group(backend, group, &mut out);
    out
}

/// Commits write-only requests in one transaction. Should that fail, each is
/// retried alone, so one bad write cannot fail its neighbours.
fn commit_group<C>(
    backend: &mut dyn Backend,
    group: Vec<Request<C>>,
    out: &mut Vec<(C, Result<Answer, StoreError>)>,
) {
    if group.is_empty() {
        return;
    }
    let writes: Vec<&Write> = group.iter().flat_map(|r| &r.writes).collect();
    let all_ok = match backend.commit(&writes) {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "group commit of {} requests failed: {e}; retrying one by one",
                group.len()
            );
            false
        }
    };
    for req in group {
        let result = if all_ok {
            Ok(())
        } else {
            backend.commit(&req.writes.iter().collect::<Vec<_>>())
        };
        if let Err(e) = &result {
            log::error!("storage write failed: {e}");
        }
        if let Some(token) = req.done {
            out.push((token, result.map(|()| Answer::Done)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        ConvId, ConvKind, MemoryBackend, MsgState, Query, RequestState, SqliteBackend,
        StoredMessage, UserId,
    };

    /// Runs `test` against each backend, fresh, named for the failure message.
    fn each_backend(mut test: impl FnMut(&str, &mut dyn Backend)) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let mut sqlite = SqliteBackend::open(dir.path(), blobs.clone()).unwrap();
        test("sqlite", &mut sqlite);
        test("memory", &mut MemoryBackend::new(Some(blobs)));
    }

    fn user(id: u32, name: &str) -> Write {
        Write::User {
            id: UserId(id),
            name: name.into(),
            phc: "phc".into(),
            created: 0,
        }
    }

    fn message(seq: u64, text: &str) -> Write {
        Write::Message(StoredMessage {
            conv: ConvId(0),
            seq,
            id: uuid::Uuid::from_u128(u128::from(seq)),
            sender: UserId(0),
            at: seq as i64,
            text: text.into(),
            state: MsgState::Sent,
        })
    }

    fn ask(db: &mut dyn Backend, query: Query) -> Result<Answer, StoreError> {
        run_batch(db, vec![Request::query(query, ())]).remove(0).1
    }

    /// The seqs of a page of messages.
    fn seqs(answer: Result<Answer, StoreError>) -> Vec<u64> {
        match answer {
            Ok(Answer::Messages(m)) => m.iter().map(|m| m.seq).collect(),
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
                matches!(done[1].1, Err(StoreError::Conflict(_))),
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
                delivered,
                read,
            };
            let batch = [cursor(5, 4), cursor(3, 2), cursor(6, 1)]
                .into_iter()
                .map(|w| Request::write(vec![w], Some(())))
                .collect();
            let done = run_batch(db, batch);
            assert!(done.iter().all(|(_, r)| r.is_ok()), "{name}");
            let snap = db.load(10).unwrap();
            assert_eq!(snap.cursors, [(UserId(0), ConvId(0), 6, 4)], "{name}");
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
                before,
                limit,
            };
            assert_eq!(seqs(ask(db, before(u64::MAX, 3))), [4, 3, 2], "{name}");
            assert_eq!(seqs(ask(db, before(3, 10))), [2, 1], "{name}");
            let after = Query::After {
                conv,
                after: 1,
                limit: 2,
            };
            assert_eq!(seqs(ask(db, after)), [2, 3], "{name}");
            let search = |words: &[&str], before| Query::Search {
                conv,
                words: words.iter().map(|w| w.to_string()).collect(),
                before,
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
                seq,
                text: text.map(str::to_string),
            };
            match ask(db, change(2, Some("goodbye there"))) {
                Ok(Answer::Changed(m)) => {
                    assert_eq!(
                        (m.seq, m.state, m.text.as_str()),
                        (2, MsgState::Edited, "goodbye there"),
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
                matches!(ask(db, change(1, None)), Ok(Answer::Changed(_))),
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
                .map(|m| (m.seq, m.state))
                .collect();
            assert_eq!(recent, [(3, MsgState::Sent), (4, MsgState::Sent)], "{name}");
            assert_eq!(snap.convs[0].last_seq, 4, "{name}");
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
                    delivered: 1,
                    read: 0,
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
}
