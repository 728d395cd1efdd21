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
const SOFT_LIMIT_CHECK: Duration = Duration::from_millis(250);

/// The soft outbox limit: which sessions are over it, and since when.
///
/// Only slow readers are ever listed, so the list is short and a linear
/// scan is cheaper than a map. A session is put on the clock after a flush
/// leaves its outbox above the limit and taken off after one leaves it
/// below, so the clock measures continuous time over the limit.
#[derive(Debug)]
pub(super) struct SoftLimit {
    /// Outboxes above this many bytes are on the clock (`usize::MAX`: off).
    bytes: usize,
    /// How long an outbox may stay above `bytes`, in milliseconds.
    allowed_ms: u32,
    /// (connection slot, ms since start when its outbox went over).
    over: Vec<(usize, u32)>,
    last_check: Instant,
}

impl SoftLimit {
    /// `bytes` or `seconds` of 0 turns the limit off.
    pub(super) fn new(bytes: usize, seconds: u64) -> Self {
        let on = bytes > 0 && seconds > 0;
        SoftLimit {
            bytes: if on { bytes } else { usize::MAX },
            allowed_ms: u32::try_from(seconds.saturating_mul(1000)).unwrap_or(u32::MAX),
            over: Vec::new(),
            last_check: Instant::now(),
        }
    }

    /// The limit in bytes (`usize::MAX` when off).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// After a flush of connection `i`: puts it on the clock or takes it off.
    /// `listed` is the connection's own note of being on the clock, which
    /// keeps this a comparison for the common case of a reader that keeps up.
    pub(super) fn track(&mut self, i: usize, listed: &mut bool, queued: usize, now_ms: u32) {
        let over = queued > self.bytes;
        if over == *listed {
            return;
        }
        *listed = over;
        if over {
            self.over.push((i, now_ms));
        } else {
            self.forget(i);
        }
    }

    /// Connection `i` is closing or back under the limit.
    pub(super) fn forget(&mut self, i: usize) {
        self.over.retain(|&(o, _)| o != i);
    }

    /// How long the loop may sleep: short while anyone is on the clock.
    pub(super) fn poll_cap(&self) -> Option<Duration> {
        (!self.over.is_empty()).then_some(SOFT_LIMIT_CHECK)
    }

    /// The connections over the limit for longer than allowed; looks at most
    /// once per `SOFT_LIMIT_CHECK`.
    fn expired(&mut self, now_ms: u32) -> Vec<usize> {
        if self.over.is_empty() || self.last_check.elapsed() < SOFT_LIMIT_CHECK {
            return Vec::new();
        }
        self.last_check = Instant::now();
        self.over
            .iter()
            .filter(|&&(_, since)| now_ms.saturating_sub(since) > self.allowed_ms)
            .map(|&(i, _)| i)
            .collect()
    }
}

impl Server {
    /// Drops connection `i` as a slow consumer, for `reason`.
    pub(super) fn drop_slow(&mut self, i: usize, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        if conn.session.dropped {
            return;
        }
        conn.session.close_as(reason);
        self.counters.slow_consumer_drops += 1;
        // Best effort: the client may be mid-line, hence the leading CRLF.
        conn.session.outbox.clear();
        conn.session.waiting = Vec::new();
        let _ = io::Write::write(&mut conn.transport, driver_lines::SLOW_CONSUMER);
        conn.session.closing = true;
        conn.session.dropped = true;
        self.dead.push(i);
    }

    /// Drops the sessions whose outbox has stayed above the soft limit for
    /// longer than allowed.
    pub(super) fn drop_over_soft_too_long(&mut self) {
        let now = self.now_ms();
        for i in self.soft.expired(now) {
            self.drop_slow(i, CloseReason::SlowConsumerSoft);
        }
    }
}
