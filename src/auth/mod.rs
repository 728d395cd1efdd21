//! Password hashing on worker threads.
//!
//! argon2 is built to be slow (tens of milliseconds and ~19 MiB per hash at
//! the recommended parameters); on the event-loop thread one login would stall
//! every session. Jobs go to a small pool over a channel; each result comes
//! back over another channel and wakes the loop through its `mio::Waker`.
//! The job carries an opaque context `C` that the caller gets back untouched,
//! so this module knows nothing of sessions or users.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2 cost parameters. The default is the crate's recommendation.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for Cost {
    fn default() -> Self {
        Cost {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
        }
    }
}

impl Cost {
    fn hasher(&self) -> Argon2<'static> {
        let params = Params::new(self.memory_kib, self.iterations, 1, None)
            .unwrap_or_else(|_| Params::default());
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

pub enum Work {
    /// Make a PHC string for a new password.
    Hash { password: String },
    /// Check a password against a stored PHC string.
    Verify { password: String, phc: String },
}

pub enum Outcome {
    Hashed(Option<String>),
    Verified(bool),
}

pub struct Job<C> {
    pub work: Work,
    pub ctx: C,
}

pub struct Done<C> {
    pub outcome: Outcome,
    pub ctx: C,
}

/// Hashes `password` with `cost`; also used once at startup for the decoy
/// hash that unknown users are verified against.
pub fn hash(cost: Cost, password: &str) -> Option<String> {
    cost.hasher()
        .hash_password(password.as_bytes())
        .ok()
        .map(|h| h.to_string())
}

fn run(work: Work, cost: Cost) -> Outcome {
    match work {
        Work::Hash { password } => Outcome::Hashed(hash(cost, &password)),
        Work::Verify { password, phc } => {
            let ok = PasswordHash::new(&phc)
                .map(|parsed| {
                    cost.hasher()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            Outcome::Verified(ok)
        }
    }
}

/// Handle to the pool; dropping it lets the workers exit.
pub struct Pool<C> {
    jobs: mpsc::Sender<Job<C>>,
}

impl<C: Send + 'static> Pool<C> {
    /// Starts `threads` workers. Each finished job is sent on `done` and then
    /// `wake` is called so the event loop looks at the channel.
    pub fn start(
        threads: usize,
        cost: Cost,
        done: mpsc::Sender<Done<C>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Job<C>>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let done = done.clone();
            let wake = Arc::clone(&wake);
            thread::Builder::new()
                .name(format!("auth-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job, never while hashing.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let outcome = run(job.work, cost);
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
                .expect("spawning an auth worker thread");
        }
        Pool { jobs: tx }
    }

    pub fn submit(&self, job: Job<C>) {
        // Workers only stop when this handle is dropped, so send cannot fail
        // while it is alive; a failure would mean the pool crashed.
        if self.jobs.send(job).is_err() {
            log::error!("auth worker pool is gone; job dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let cost = Cost {
            memory_kib: 64,
            iterations: 1,
        };
        let phc = hash(cost, "correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let check = |pw: &str| {
            matches!(
                run(
                    Work::Verify {
                        password: pw.into(),
                        phc: phc.clone()
                    },
                    cost
                ),
                Outcome::Verified(true)
            )
        };
        assert!(check("correct horse"));
        assert!(!check("wrong horse"));
    }
}
