//! The storage thread: group commit of queued requests, answers in order.

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use super::{Answer, Assigned, Backend, Committed, Request, StoreError, Write};

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
/// retried alone, so one bad write cannot fail its neighbours (a lone
/// request's error is simply its answer).
fn commit_group<C>(
    backend: &mut dyn Backend,
    mut group: Vec<Request<C>>,
    out: &mut Vec<(C, Result<Answer, StoreError>)>,
) {
    if group.is_empty() {
        return;
    }
    let writes: Vec<&Write> = group.iter().flat_map(|r| &r.writes).collect();
    let mut all = match backend.commit(&writes) {
        Ok(assigned) => Some(assigned.into_iter()),
        Err(e) if group.len() == 1 => {
            let req = group.remove(0);
            return answer(req, Err(e), out);
        }
        Err(e) => {
            log::error!(
                "group commit of {} requests failed: {e}; retrying one by one",
                group.len()
            );
            None
        }
    };
    for req in group {
        let result = match &mut all {
            // Each request takes the assignments of its own writes.
            Some(assigned) => {
                let n = req.writes.iter().filter(|w| w.assigns()).count();
                Ok(assigned.by_ref().take(n).collect())
            }
            None => backend.commit(&req.writes.iter().collect::<Vec<_>>()),
        };
        answer(req, result, out);
    }
}

/// Hands a write request its outcome.
fn answer<C>(
    req: Request<C>,
    result: Result<Vec<Assigned>, StoreError>,
    out: &mut Vec<(C, Result<Answer, StoreError>)>,
) {
    if let Err(e) = &result
        && e.is_failure()
    {
        log::error!("storage write failed: {e}");
    }
    if let Some(token) = req.done {
        out.push((token, result.map(Answer::Done)));
    }
}
