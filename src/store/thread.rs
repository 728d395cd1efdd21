//! The storage thread: group commit of queued requests, answers in order.

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::{Answer, Assigned, Backend, Committed, Request, StoreError, Write};

/// Most requests a single transaction takes, so one commit stays short.
const MAX_BATCH: usize = 4096;

/// How often the backend's background work runs: when the queue is empty,
/// or after a round if it never is. Not sooner even when idle: FTS5 indexes
/// a batch of 20,000 messages for about a third of the CPU per message that
/// batches of 1,000 cost, and a batch of ten costs more again. SQLite's
/// full-text index is about this far behind the commits (SEARCH catches
/// its conversation up itself, so this bounds only the work a crash leaves
/// for the next start).
pub const BACKGROUND_EVERY: Duration = Duration::from_millis(200);

/// Rows of background work per idle step: a request that arrives meanwhile
/// waits for at most one step (about 10-20 ms).
const IDLE_STEP_ROWS: usize = 8192;

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
            .spawn(move || run(backend.as_mut(), rx, done, wake))
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

/// What one storage round did: the answers of the requests that wait for
/// one, and how many messages it made durable (STATS counts them).
pub struct Round<C> {
    pub done: Vec<(C, Result<Answer, StoreError>)>,
    pub messages: u64,
}

/// The answers of one round (see [`run_round`]).
pub fn run_batch<C>(
    backend: &mut dyn Backend,
    batch: Vec<Request<C>>,
) -> Vec<(C, Result<Answer, StoreError>)> {
    run_round(backend, batch).done
}

/// The storage thread: rounds of queued requests, and the backend's
/// background work (SQLite's full-text index) every [`BACKGROUND_EVERY`]:
/// in steps while the queue is empty, all of it after a round while the
/// queue never empties. After the last request it
/// finishes that work, so a clean stop leaves nothing to catch up.
fn run<C>(
    backend: &mut dyn Backend,
    rx: mpsc::Receiver<Request<C>>,
    done: mpsc::Sender<Committed<C>>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    // Whatever a crash left behind is caught up first.
    let mut behind = true;
    let mut caught_up_at = Instant::now();
    loop {
        let first = match rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) if behind => {
                let waited = caught_up_at.elapsed();
                if waited >= BACKGROUND_EVERY {
                    behind = background(backend, IDLE_STEP_ROWS, &mut caught_up_at);
                    continue;
                }
                match rx.recv_timeout(BACKGROUND_EVERY - waited) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            Err(mpsc::TryRecvError::Empty) => match rx.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let round = run_round(backend, batch);
        behind = true;
        if !round.done.is_empty() || round.messages > 0 {
            let committed = Committed {
                done: round.done,
                messages: round.messages,
                took: started.elapsed(),
            };
            if done.send(committed).is_err() {
                return;
            }
            wake();
        }
        if caught_up_at.elapsed() >= BACKGROUND_EVERY {
            behind = background(backend, usize::MAX, &mut caught_up_at);
        }
    }
    while behind {
        behind = background(backend, usize::MAX, &mut caught_up_at);
    }
}

/// One step of background work; returns whether more is left (not after
/// an error: it is logged, and tried again after the next round).
fn background(backend: &mut dyn Backend, max_rows: usize, caught_up_at: &mut Instant) -> bool {
    match backend.background(max_rows) {
        Ok(true) => true,
        Ok(false) => {
            *caught_up_at = Instant::now();
            false
        }
        Err(e) => {
            log::error!("storage background work failed: {e}");
            false
        }
    }
}

/// Runs one round: consecutive write-only requests share one transaction
/// (group commit); a request with a query runs in its own, in its place, so
/// answers keep submission order.
pub fn run_round<C>(backend: &mut dyn Backend, batch: Vec<Request<C>>) -> Round<C> {
    let mut round = Round {
        done: Vec::with_capacity(batch.len()),
        messages: 0,
    };
    let mut group = Vec::new();
    for req in batch {
        let Some(query) = &req.query else {
            group.push(req);
            continue;
        };
        commit_group(backend, std::mem::take(&mut group), &mut round);
        let writes: Vec<&Write> = req.writes.iter().collect();
        let answer = backend.query(&writes, query);
        match &answer {
            Err(e) if e.is_failure() => log::error!("storage query failed: {e}"),
            Err(_) => {}
            Ok(_) => round.messages += messages_in(&req),
        }
        if let Some(token) = req.done {
            round.done.push((token, answer));
        }
    }
    commit_group(backend, group, &mut round);
    round
}

fn messages_in<C>(req: &Request<C>) -> u64 {
    req.writes.iter().filter(|w| w.is_message()).count() as u64
}

/// Commits write-only requests in one transaction. Should that fail, each is
/// retried alone, so one bad write cannot fail its neighbours (a lone
/// request's error is simply its answer).
fn commit_group<C>(backend: &mut dyn Backend, mut group: Vec<Request<C>>, out: &mut Round<C>) {
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
fn answer<C>(req: Request<C>, result: Result<Vec<Assigned>, StoreError>, out: &mut Round<C>) {
    match &result {
        Err(e) if e.is_failure() => log::error!("storage write failed: {e}"),
        Err(_) => {}
        Ok(_) => out.messages += messages_in(&req),
    }
    if let Some(token) = req.done {
        out.done.push((token, result.map(Answer::Done)));
    }
}
