//! Push notifications to Matrix push gateways, for a user with no session
//! online (and, while away, for direct messages and mentions).
//!
//! - The hub decides who gets one when it posts a message, and writes a
//!   `push_queue` row in the transaction that stores the message: a crash
//!   loses no notification of a message it kept, and a message it lost
//!   sends none.
//! - This thread, with a database connection of its own, sends the rows
//!   that are due, one POST per gateway with that user's devices on it.
//!   A sent row is deleted; a failure that may pass (unreachable, 5xx,
//!   429) is retried with exponential backoff up to [`RETRY_MAX`]; one that
//!   will not (another 4xx, a private address) is dropped and logged. So
//!   delivery is at least once, and the gateway dedupes by `event_id`,
//!   the message's msgid. Pushkeys a gateway lists as `rejected` are
//!   deleted.
//! - `guard` keeps the server from being pointed at its own networks.

pub mod gateway;
pub mod guard;
pub mod queue;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use queue::{Device, PushQueue, Queued};

use crate::store::StoreError;

/// How often the thread looks for due rows when there were none.
const POLL: Duration = Duration::from_millis(100);
/// The pause before opening the queue again after a failure.
const REOPEN: Duration = Duration::from_secs(1);
/// Rows taken per look.
const BATCH: usize = 256;
/// The first retry's wait; each later one doubles it.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two tries: a gateway back after a long outage
/// gets its backlog within this.
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// Opens the push thread's connection to the store's database.
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn PushQueue>, StoreError> + Send>;

/// A pushkey a gateway rejected, already deleted from the store: the loop
/// drops it from the hub's table ([`crate::chat::Hub::pusher_rejected`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub user: i64,
    pub app_id: String,
    pub pushkey: String,
}

/// Starts the push thread; it opens its connection with `open`, and again
/// after a failure (the database went away), pausing `REOPEN` between.
/// Rejected pushkeys go to `rejected`, with a wake-up of the loop.
pub fn start(
    mut open: Opener,
    allow_private: bool,
    rejected: Sender<Rejected>,
    wake: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("push".into())
        .spawn(move || {
            let agent = guard::agent(allow_private);
            let mut queue: Option<Box<dyn PushQueue>> = None;
            loop {
                let q = match &mut queue {
                    Some(q) => q,
                    None => match open() {
                        Ok(q) => queue.insert(q),
                        Err(e) => {
                            log::warn!("push: cannot open the queue: {e}");
                            std::thread::sleep(REOPEN);
                            continue;
                        }
                    },
                };
                let tell = |r: Rejected| {
                    if rejected.send(r).is_ok() {
                        wake();
                    }
                };
                match round(q.as_mut(), &agent, &tell) {
                    Ok(0) => std::thread::sleep(POLL),
                    Ok(_) => {}
                    Err(e) => {
                        log::warn!("push: {e}");
                        queue = None;
                        std::thread::sleep(REOPEN);
                    }
                }
            }
        })
        .map(drop)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// When to try again after `attempts` failures.
pub fn backoff(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    (RETRY_FIRST * 2u32.pow(doublings)).min(RETRY_MAX)
}

/// Sends what is due; returns how many rows it handled.
fn round(
    queue: &mut dyn PushQueue,
    agent: &ureq::Agent,
    tell: &dyn Fn(Rejected),
) -> Result<usize, StoreError> {
    let due = queue.due(now_ms(), BATCH)?;
    for q in &due {
        let devices = queue.devices(q.user)?;
        match send(agent, q, &devices) {
            Ok(rejected) => {
                for d in devices.iter().filter(|d| rejected.contains(&d.pushkey)) {
                    log::info!("push: gateway rejected pushkey of app {}", d.app_id);
                    queue.reject(&d.app_id, &d.pushkey)?;
                    tell(Rejected {
                        user: q.user,
                        app_id: d.app_id.clone(),
                        pushkey: d.pushkey.clone(),
                    });
                }
                queue.done(q.id)?;
            }
            Err(f) if f.retry => {
                let attempts = q.attempts + 1;
                let wait = i64::try_from(backoff(attempts).as_millis()).unwrap_or(i64::MAX);
                log::warn!(
                    "push: {} (attempt {attempts}, again in {wait} ms)",
                    f.reason
                );
                queue.retry(q.id, attempts, now_ms().saturating_add(wait))?;
            }
            Err(f) => {
                log::warn!("push: dropped a notification: {}", f.reason);
                queue.done(q.id)?;
            }
        }
    }
    Ok(due.len())
}

/// One POST per gateway; the notification is sent once every gateway took
/// it, and the rejected pushkeys of all of them are returned.
fn send(
    agent: &ureq::Agent,
    q: &Queued,
    devices: &[Device],
) -> Result<Vec<String>, gateway::Failure> {
    let mut by_url: BTreeMap<&str, Vec<Device>> = BTreeMap::new();
    for d in devices {
        by_url.entry(&d.url).or_default().push(d.clone());
    }
    let mut rejected = Vec::new();
    for (url, devices) in by_url {
        rejected.extend(gateway::send(agent, url, q, &devices)?);
    }
    Ok(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(40), RETRY_MAX);
    }
}
