//! The storage thread: group commit of queued requests, answers in order.

use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::{Answer, Assigned, Backend, Committed, Request, StoreError, WalSync, Write};

/// Most requests a single transaction takes, so one commit stays short
/// (one hand-off more past it at most: a loop turn's requests stay together).
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
    tx: mpsc::Sender<Vec<Request<C>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<C: Send + 'static> Storage<C> {
    pub fn start(
        mut backend: Box<dyn Backend>,
        done: mpsc::Sender<Committed<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Vec<Request<C>>>();
        let thread = thread::Builder::new()
            .name("storage".into())
            .spawn(move || run(backend.as_mut(), rx, done, wake))
            .expect("spawning the storage thread");
        Storage {
            tx,
            thread: Some(thread),
        }
    }

    /// Queues `reqs` in one hand-off: the storage thread, woken once, finds
    /// them all, instead of waking at the first and committing it alone
    /// while the loop (on the same core) queues the rest.
    pub fn submit_all(&self, reqs: Vec<Request<C>>) {
        if !reqs.is_empty() && self.tx.send(reqs).is_err() {
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
fn run<C: Send + 'static>(
    backend: &mut dyn Backend,
    rx: mpsc::Receiver<Vec<Request<C>>>,
    done: mpsc::Sender<Committed<C>>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    let release = Release::start(backend.take_wal_sync(), done, wake);
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
        release.wait_until_taken();
        let mut batch = first;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let round = run_round(backend, batch);
        behind = true;
        if (!round.done.is_empty() || round.messages > 0) && !release.send(round, started) {
            return;
        }
        if caught_up_at.elapsed() >= BACKGROUND_EVERY {
            behind = background(backend, usize::MAX, &mut caught_up_at);
        }
    }
    // The last answers go out before the background work is finished.
    drop(release);
    while behind {
        behind = background(backend, usize::MAX, &mut caught_up_at);
    }
}

/// How a round's answers reach the hub: at once when its commit is durable
/// as it returns, or through the WAL sync thread when the backend makes
/// commits durable with a [`WalSync`].
enum Release<C> {
    Now {
        done: mpsc::Sender<Committed<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    },
    AfterSync {
        /// Rounds whose commit has returned, to the WAL sync thread. It
        /// takes all of them at each fsync, and the storage thread hands
        /// over at most one while it waits (see `wait_until_taken`).
        rounds: Option<mpsc::Sender<(Round<C>, Instant)>>,
        handed: Arc<Handed>,
        thread: Option<thread::JoinHandle<()>>,
    },
}

/// Rounds handed to the WAL sync thread and not taken by it yet, and
/// whether it has stopped.
#[derive(Default)]
struct Handed {
    state: Mutex<(usize, bool)>,
    taken: Condvar,
}

impl Handed {
    fn update(&self, f: impl FnOnce(&mut (usize, bool))) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state);
        self.taken.notify_all();
    }
}

impl<C: Send + 'static> Release<C> {
    fn start(
        wal_sync: Option<Box<dyn WalSync>>,
        done: mpsc::Sender<Committed<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let Some(wal_sync) = wal_sync else {
            return Release::Now { done, wake };
        };
        let (rounds, rx) = mpsc::channel();
        let handed = Arc::new(Handed::default());
        let sync_handed = Arc::clone(&handed);
        let thread = thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                sync_loop(wal_sync, rx, &sync_handed, done, wake);
                sync_handed.update(|(_, stopped)| *stopped = true);
            })
            .expect("spawning the WAL sync thread");
        Release::AfterSync {
            rounds: Some(rounds),
            handed,
            thread: Some(thread),
        }
    }

    /// Under a WAL sync, a round starts only once the sync thread has taken
    /// every committed round, i.e. while it fsyncs the previous ones. A
    /// round committed sooner would be one more commit (SQLite's cost per
    /// commit is large against its cost per message) of the few requests
    /// that arrived meanwhile; waiting puts everything that arrives during
    /// an fsync into one round, as a commit with its own fsync did, while
    /// that round's commit still overlaps the fsync before it.
    fn wait_until_taken(&self) {
        if let Release::AfterSync { handed, .. } = self {
            let state = handed.state.lock().unwrap_or_else(|e| e.into_inner());
            let _taken = handed
                .taken
                .wait_while(state, |(waiting, stopped)| *waiting > 0 && !*stopped)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Hands on a round whose commit has returned; false once the hub is
    /// gone.
    fn send(&self, round: Round<C>, started: Instant) -> bool {
        match self {
            Release::Now { done, wake } => {
                if done.send(committed(round, started)).is_err() {
                    return false;
                }
                wake();
                true
            }
            Release::AfterSync { rounds, handed, .. } => {
                handed.update(|(waiting, _)| *waiting += 1);
                rounds
                    .as_ref()
                    .is_some_and(|tx| tx.send((round, started)).is_ok())
            }
        }
    }
}

impl<C> Drop for Release<C> {
    /// Waits for the WAL sync thread to sync and answer every round handed
    /// to it, so the backend (and its checkpointer's last checkpoint) goes
    /// only after that.
    fn drop(&mut self) {
        if let Release::AfterSync { rounds, thread, .. } = self {
            drop(rounds.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn committed<C>(round: Round<C>, started: Instant) -> Committed<C> {
    Committed {
        done: round.done,
        messages: round.messages,
        took: started.elapsed(),
    }
}

/// The WAL sync thread: takes every round queued since its last sync (each
/// committed before it was queued), syncs once, which makes them all
/// durable, and only then hands their answers to the hub, so that nothing
/// is acknowledged or published before it is on disk. The storage thread
/// commits the next rounds meanwhile. A failed fsync stops the process, as
/// PostgreSQL does: the commits it should have covered are already visible
/// to readers and cannot be taken back, and after a failure the kernel may
/// have dropped their pages, so neither answering nor retrying would be
/// true; a restart recovers what the disk holds, none of it acknowledged.
fn sync_loop<C>(
    mut wal_sync: Box<dyn WalSync>,
    rounds: mpsc::Receiver<(Round<C>, Instant)>,
    handed: &Handed,
    done: mpsc::Sender<Committed<C>>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    while let Ok(first) = rounds.recv() {
        let synced: Vec<_> = std::iter::once(first).chain(rounds.try_iter()).collect();
        handed.update(|(waiting, _)| *waiting = waiting.saturating_sub(synced.len()));
        if let Err(e) = wal_sync.sync() {
            log::error!(
                "{e}; stopping, since the commits it covers can be neither acknowledged nor taken back"
            );
            std::process::abort();
        }
        for (round, started) in synced {
            if done.send(committed(round, started)).is_err() {
                return;
            }
        }
        wake();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryBackend, Query, Snapshot, UserId};

    const WAIT: Duration = Duration::from_secs(10);

    /// What the gated backend did, in order.
    #[derive(Debug, PartialEq, Eq)]
    enum Event {
        Committed,
        SyncStarted,
    }

    /// The in-memory backend, with a WAL sync that reports its start and
    /// returns only when the test says so.
    struct Gated {
        inner: MemoryBackend,
        events: mpsc::Sender<Event>,
        wal_sync: Option<GatedSync>,
    }

    struct GatedSync {
        events: mpsc::Sender<Event>,
        finish: mpsc::Receiver<()>,
    }

    impl WalSync for GatedSync {
        /// Returns when told to, or when the test has ended (a failing
        /// one too: an error here would abort the test process).
        fn sync(&mut self) -> std::io::Result<()> {
            let _ = self.events.send(Event::SyncStarted);
            let _ = self.finish.recv();
            Ok(())
        }
    }

    impl Backend for Gated {
        fn load(&mut self, recent: usize) -> Result<Snapshot, StoreError> {
            self.inner.load(recent)
        }
        fn commit(&mut self, writes: &[&Write]) -> Result<Vec<Assigned>, StoreError> {
            let assigned = self.inner.commit(writes);
            let _ = self.events.send(Event::Committed);
            assigned
        }
        fn query(&mut self, writes: &[&Write], query: &Query) -> Result<Answer, StoreError> {
            self.inner.query(writes, query)
        }
        fn take_wal_sync(&mut self) -> Option<Box<dyn WalSync>> {
            self.wal_sync
                .take()
                .map(|s| Box::new(s) as Box<dyn WalSync>)
        }
    }

    fn user(id: u32) -> Request<u32> {
        let write = Write::User {
            id: UserId(id),
            name: format!("user{id}"),
            phc: "phc".into(),
            created: 0,
        };
        Request::write(vec![write], Some(id))
    }

    fn tokens(committed: Committed<u32>) -> Vec<u32> {
        committed
            .done
            .into_iter()
            .map(|(token, result)| {
                assert!(result.is_ok(), "{result:?}");
                token
            })
            .collect()
    }

    /// Under a WAL sync a round is answered only after a sync that started
    /// after its commit has finished, and the next round commits while that
    /// sync runs (the pipeline `--durability sync` relies on).
    #[test]
    fn answers_wait_for_the_sync_that_covers_their_commit() {
        let (events_tx, events) = mpsc::channel();
        let (finish_sync, finish) = mpsc::channel();
        let backend = Gated {
            inner: MemoryBackend::new(None),
            events: events_tx.clone(),
            wal_sync: Some(GatedSync {
                events: events_tx,
                finish,
            }),
        };
        let (done_tx, done) = mpsc::channel();
        let storage = Storage::start(Box::new(backend), done_tx, Arc::new(|| {}));
        // Declared after `storage`, so dropped before it when an assertion
        // fails: the stop then does not wait on a sync that nobody ends.
        let finish_sync = finish_sync;

        storage.submit_all(vec![user(1)]);
        assert_eq!(events.recv_timeout(WAIT), Ok(Event::Committed));
        assert_eq!(events.recv_timeout(WAIT), Ok(Event::SyncStarted));
        assert!(done.try_recv().is_err(), "answered before its sync ended");

        // The next round commits while the first one's sync is running, and
        // waits for a sync of its own.
        storage.submit_all(vec![user(2)]);
        assert_eq!(events.recv_timeout(WAIT), Ok(Event::Committed));
        assert!(done.try_recv().is_err(), "answered before its sync ended");
        // With that round committed and not yet taken by the sync thread,
        // the next requests wait (nothing to await but a quiet moment: a
        // commit would come within microseconds), and then go into one
        // round together.
        storage.submit_all(vec![user(3)]);
        assert_eq!(
            events.recv_timeout(Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "committed while the previous round waited for the sync thread"
        );
        storage.submit_all(vec![user(4)]);
        finish_sync.send(()).unwrap();
        assert_eq!(tokens(done.recv_timeout(WAIT).unwrap()), [1]);
        let mut next = [
            events.recv_timeout(WAIT).unwrap(),
            events.recv_timeout(WAIT).unwrap(),
        ];
        next.sort_by_key(|e| matches!(e, Event::SyncStarted));
        assert_eq!(next, [Event::Committed, Event::SyncStarted]);
        assert!(done.try_recv().is_err(), "answered before its sync ended");
        finish_sync.send(()).unwrap();
        assert_eq!(tokens(done.recv_timeout(WAIT).unwrap()), [2]);

        // A round committed before the storage stops is synced and answered
        // before the stop returns.
        assert_eq!(events.recv_timeout(WAIT), Ok(Event::SyncStarted));
        finish_sync.send(()).unwrap();
        drop(storage);
        assert_eq!(tokens(done.try_recv().unwrap()), [3, 4]);
        assert!(
            events.try_recv().is_err(),
            "one commit and one sync for 3 and 4"
        );
    }
}
