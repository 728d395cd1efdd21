//! Password hashing on worker threads.
//!
//! argon2 is built to be slow (tens of milliseconds and ~19 MiB per hash at
//! the recommended parameters); on the event-loop thread one login would stall
//! every session, so hashing runs on a small pool of [`Workers`].

use std::sync::{Arc, mpsc};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::worker::{self, Workers};

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

pub type Job<C> = worker::Job<Work, C>;
pub type Done<C> = worker::Done<Outcome, C>;
/// Handle to the hashing threads; dropping it lets them exit.
pub type Pool<C> = Workers<Work, C>;

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

/// Starts `threads` hashing threads. Each finished job is sent on `done`
/// and then `wake` is called so the event loop looks at the channel.
pub fn start<C: Send + 'static>(
    threads: usize,
    cost: Cost,
    done: mpsc::Sender<Done<C>>,
    wake: Arc<dyn Fn() + Send + Sync>,
) -> Pool<C> {
    Workers::start("auth", threads, move |work| run(work, cost), done, wake)
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
