//! The storage thread: group commit of queued requests, answers in order.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::sqlite::{apply, blob_access, change, messages_after, messages_before, search};
use super::{Answer, Committed, Query, Request, StoreError, Write};

/// Most requests a single transaction takes, so one commit stays short.
const MAX_BATCH: usize = 4096;

/// Handle to the storage thread; dropping it makes the thread finish its
/// queue, commit, and exit.
pub struct Storage<C> {
    tx: mpsc::Sender<Request<C>>,
    thread: Option<thread::JoinHandle<()>>,
    /// Dropping it stops the checkpointer.
    checkpoint_stop: Option<mpsc::Sender<()>>,
    checkpointer: Option<thread::JoinHandle<()>>,
}

/// How often the background thread moves the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Runs PASSIVE checkpoints on a connection of its own: they never block the
/// storage thread's commits, and they keep the WAL from growing unbounded.
fn checkpointer(path: String, stop: mpsc::Receiver<()>) {
    let conn = match Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("checkpointer cannot open {path}: {e}");
            return;
        }
    };
    loop {
        let last = matches!(
            stop.recv_timeout(CHECKPOINT_EVERY),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        let mode = if last { "TRUNCATE" } else { "PASSIVE" };
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            log::warn!("WAL checkpoint failed: {e}");
        }
        if last {
            return;
        }
    }
}

impl<C: Send + 'static> Storage<C> {
    pub fn start(
        mut conn: Connection,
        blob_dir: std::path::PathBuf,
        done: mpsc::Sender<Committed<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (stop_tx, stop_rx) = mpsc::channel();
        let checkpoint = conn.path().map(str::to_string).and_then(|path| {
            thread::Builder::new()
                .name("checkpoint".into())
                .spawn(move || checkpointer(path, stop_rx))
                .ok()
        });
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
                    let done_tokens = run_batch(&mut conn, &blob_dir, batch);
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
            checkpoint_stop: Some(stop_tx),
            checkpointer: checkpoint,
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
        // Closing the channel lets the thread drain and exit; joining makes
        // shutdown wait for the last commit.
        let (dead, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Then a last checkpoint, which also empties the WAL.
        drop(self.checkpoint_stop.take());
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
    }
}

/// Runs one round: consecutive write-only requests share one transaction
/// (group commit); a request with a query runs in its own, in its place, so
/// answers keep submission order.
pub fn run_batch<C>(
    conn: &mut Connection,
    blob_dir: &Path,
    batch: Vec<Request<C>>,
) -> Vec<(C, Result<Answer, StoreError>)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut group = Vec::new();
    for req in batch {
        if req.query.is_none() {
            group.push(req);
            continue;
        }
        commit_group(conn, std::mem::take(&mut group), &mut out);
        let answer = run_query(conn, blob_dir, &req);
        if let Err(e) = &answer
            && e.is_failure()
        {
            log::error!("storage query failed: {e}");
        }
        if let Some(token) = req.done {
            out.push((token, answer));
        }
    }
    commit_group(conn, group, &mut out);
    out
}

/// Commits write-only requests in one transaction. Should that fail, each is
/// retried alone, so one bad write cannot fail its neighbours.
fn commit_group<C>(
    conn: &mut Connection,
    group: Vec<Request<C>>,
    out: &mut Vec<(C, Result<Answer, StoreError>)>,
) {
    if group.is_empty() {
        return;
    }
    let all_ok = match commit(conn, group.iter().flat_map(|r| &r.writes)) {
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
            commit(conn, req.writes.iter())
        };
        if let Err(e) = &result {
            log::error!("storage write failed: {e}");
        }
        if let Some(token) = req.done {
            out.push((token, result.map(|()| Answer::Done)));
        }
    }
}

fn run_query<C>(
    conn: &mut Connection,
    blob_dir: &Path,
    req: &Request<C>,
) -> Result<Answer, StoreError> {
    let tx = conn.transaction()?;
    for w in &req.writes {
        apply(&tx, w)?;
    }
    let answer = match req.query.as_ref() {
        None => Answer::Done,
        Some(&Query::Before {
            conv,
            before,
            limit,
        }) => Answer::Messages(messages_before(&tx, conv, before, limit)?),
        Some(&Query::After { conv, after, limit }) => {
            Answer::Messages(messages_after(&tx, conv, after, limit)?)
        }
        Some(Query::Search {
            conv,
            words,
            before,
            limit,
        }) => Answer::Messages(search(&tx, *conv, words, *before, *limit)?),
        Some(Query::Change { conv, seq, text }) => {
            change(&tx, *conv, *seq, text.as_deref(), blob_dir)?
        }
        Some(Query::BlobAccess { blob, user }) => blob_access(&tx, blob, *user)?,
    };
    tx.commit()?;
    Ok(answer)
}

fn commit<'a>(
    conn: &mut Connection,
    writes: impl Iterator<Item = &'a Write>,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for w in writes {
        apply(&tx, w)?;
    }
    Ok(tx.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConvId, UserId, open};

    fn user(id: u32, name: &str) -> Write {
        Write::User {
            id: UserId(id),
            name: name.into(),
            phc: "phc".into(),
            created: 0,
        }
    }

    /// A taken name fails its own request as a conflict; the requests
    /// committed in the same group stay durable.
    #[test]
    fn a_duplicate_name_is_a_conflict_and_its_neighbours_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, _) = open(dir.path(), 10).unwrap();
        let done = run_batch(
            &mut conn,
            dir.path(),
            vec![
                Request::write(vec![user(0, "alice")], Some(0)),
                Request::write(vec![user(1, "alice")], Some(1)),
                Request::write(vec![user(2, "bob")], Some(2)),
            ],
        );
        let outcome: Vec<_> = done.iter().map(|(t, r)| (*t, r.is_ok())).collect();
        assert_eq!(outcome, [(0, true), (1, false), (2, true)]);
        assert!(
            matches!(done[1].1, Err(StoreError::Conflict(_))),
            "{:?}",
            done[1].1
        );
        let (_, snap) = open(dir.path(), 10).unwrap();
        let names: Vec<_> = snap.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
    }

    /// A lower cursor written after a higher one leaves the higher value;
    /// delivered and read merge each on their own.
    #[test]
    fn cursor_writes_merge_by_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, _) = open(dir.path(), 10).unwrap();
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
        let done = run_batch(&mut conn, dir.path(), batch);
        assert!(done.iter().all(|(_, r)| r.is_ok()));
        let (_, snap) = open(dir.path(), 10).unwrap();
        assert_eq!(snap.cursors, [(UserId(0), ConvId(0), 6, 4)]);
    }
}
