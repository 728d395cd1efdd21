//! Threads that run slow jobs (password hashing, attachment I/O) off the
//! event loop.
//!
//! Jobs go to the workers over a channel; each outcome comes back over
//! another, and the loop is woken (through its `mio::Waker`) to look at it.
//! A job carries an opaque context `C` that returns untouched with its
//! outcome, so the workers know nothing of sessions or users.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

pub struct Job<W, C> {
    pub work: W,
    pub ctx: C,
}

pub struct Done<O, C> {
    pub outcome: O,
    pub ctx: C,
}

/// Handle to a set of workers; dropping it lets them exit.
pub struct Workers<W, C> {
    jobs: mpsc::Sender<Job<W, C>>,
    name: &'static str,
}

impl<W: Send + 'static, C: Send + 'static> Workers<W, C> {
    /// Starts `threads` threads named `<name>-<i>` that turn each job's work
    /// into an outcome with `run`, send it on `done` and then call `wake`.
    pub fn start<O: Send + 'static>(
        name: &'static str,
        threads: usize,
        run: impl Fn(W) -> O + Send + Sync + 'static,
        done: mpsc::Sender<Done<O, C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Job<W, C>>();
        let rx = Arc::new(Mutex::new(rx));
        let run = Arc::new(run);
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let run = Arc::clone(&run);
            let done = done.clone();
            let wake = Arc::clone(&wake);
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job, never
                        // while working on one.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let outcome = run(job.work);
                        if done
                            .send(Done {
                                outcome,
                                ctx: job.ctx,
                            })
                            .is_err()
                        {
                            return;
                        }
                        wake();
                    }
                })
                .unwrap_or_else(|e| panic!("spawning a {name} worker thread: {e}"));
        }
        Workers { jobs: tx, name }
    }

    pub fn submit(&self, job: Job<W, C>) {
        // Workers only stop when this handle is dropped, so send cannot fail
        // while it is alive; a failure would mean the workers crashed.
        if self.jobs.send(job).is_err() {
            log::error!("{} workers are gone; job dropped", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_come_back_with_their_context_and_wake_the_caller() {
        let (done_tx, done_rx) = mpsc::channel();
        let (wake_tx, wake_rx) = mpsc::channel();
        let wake_tx = Mutex::new(wake_tx);
        let workers = Workers::start(
            "test",
            2,
            |n: u32| n * 2,
            done_tx,
            Arc::new(move || {
                let _ = wake_tx.lock().unwrap().send(());
            }),
        );
        for i in 0..10u32 {
            workers.submit(Job { work: i, ctx: i });
        }
        let timeout = std::time::Duration::from_secs(10);
        let mut got: Vec<(u32, u32)> = (0..10)
            .map(|_| {
                let d = done_rx.recv_timeout(timeout).expect("an outcome");
                (d.ctx, d.outcome)
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..10).map(|i| (i, i * 2)).collect::<Vec<_>>());
        for _ in 0..10 {
            wake_rx.recv_timeout(timeout).expect("a wake per outcome");
        }
    }
}
