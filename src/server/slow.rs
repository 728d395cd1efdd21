//! Slow consumers: the hard outbox limit (`--max-outbox`, checked as lines
//! are queued) and the soft one (`--outbox-soft-limit` for
//! `--outbox-soft-seconds`, checked from the turn's end).

use std::io;
use std::time::{Duration, Instant};

use crate::protocol::driver_lines;

use super::Server;
use super::close::CloseReason;

/// How often sessions over the soft outbox limit are checked; the soft
/// deadline is kept to within this much.
pub(super) const SOFT_LIMIT_CHECK: Duration = Duration::from_millis(250);

impl Server {
    /// Drops connection `i` as a slow consumer, for `reason`.
    pub(super) fn drop_slow(&mut self, i: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.dropped {
            return;
        }
        conn.close_as(reason);
        self.counters.slow_consumer_drops += 1;
        // Best effort: the client may be mid-line, hence the leading CRLF.
        conn.outbox.clear();
        conn.waiting = Vec::new();
        let _ = io::Write::write(&mut conn.sock, driver_lines::SLOW_CONSUMER);
        conn.closing = true;
        conn.dropped = true;
        self.dead.push(i);
    }

    /// Drops the sessions whose outbox has stayed above the soft limit for
    /// longer than allowed. Checked every `SOFT_LIMIT_CHECK` at most.
    pub(super) fn drop_over_soft_too_long(&mut self) {
        if self.over_soft.is_empty() || self.last_soft_check.elapsed() < SOFT_LIMIT_CHECK {
            return;
        }
        self.last_soft_check = Instant::now();
        let now = self.now_ms();
        let soft_ms = self.soft_ms;
        let expired: Vec<usize> = self
            .over_soft
            .iter()
            .filter(|&&(_, since)| now.saturating_sub(since) > soft_ms)
            .map(|&(i, _)| i)
            .collect();
        for i in expired {
            self.drop_slow(i, CloseReason::SlowConsumerSoft);
        }
    }
}
